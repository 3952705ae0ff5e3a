"""The `reclip-eval` command: bare `--model M --task T` evaluates; everything else is a subcommand module."""
