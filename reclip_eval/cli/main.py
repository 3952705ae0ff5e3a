"""Entry point. `reclip-eval --model M --task T` is evaluation (the form typed most); the rest are subcommands,
each a small module with `add_parser()` and `run(args)`."""

from __future__ import annotations

import importlib
import logging
import os
import sys

from reclip_eval.errors import ReclipError

SUBCOMMANDS = {
    "models": ("reclip_eval.cli.models_cmd", "list the named models (zoo/)"),
    "tasks": ("reclip_eval.cli.tasks_cmd", "list the evaluation tasks (tasks/), task kinds and data layouts"),
    "recipes": ("reclip_eval.cli.recipes_cmd", "list the training recipes (training/)"),
    "data": ("reclip_eval.cli.data_cmd", "generate the synthetic shapes world (data synth)"),
    "train": ("reclip_eval.cli.train_cmd", "train a model from a recipe"),
    "config": ("reclip_eval.cli.config_cmd", "print a resolved recipe (config show)"),
    "flops": ("reclip_eval.cli.flops_cmd", "compute per sample of a model's stages (the paper's Table 2)"),
    "detect": ("reclip_eval.cli.detect_cmd", "open-vocabulary detector (detect train/predict) and LVIS evaluation"),
    "card": ("reclip_eval.cli.card_cmd", "render a checkpoint's model card from its results"),
    "leaderboard": ("reclip_eval.cli.leaderboard_cmd", "regenerate leaderboards/ from results and paper numbers"),
    "push-to-hub": ("reclip_eval.cli.push_cmd", "publish a checkpoint directory on the Hugging Face Hub"),
}


def _top_level_help() -> str:
    lines = ["usage: reclip-eval --model MODEL --task TASK [options]   (evaluate; --help after it for options)",
             "       reclip-eval SUBCOMMAND ...", "", "subcommands:"]
    width = max(map(len, SUBCOMMANDS))  # the longest name sets the column, so the descriptions line up
    lines += [f"  {name:<{width}}  {about}" for name, (_, about) in SUBCOMMANDS.items()]
    lines += ["", "examples:", "  reclip-eval --model reclip-demo --task shapes-zeroshot",
              "  reclip-eval --model openclip:ViT-B-32 --pretrained laion2b_s34b_b79k --task imagenet1k",
              "  reclip-eval models", "  reclip-eval train mini-reclip-32 --out runs/demo",
              "", "Python: import reclip_eval; model = reclip_eval.load('reclip-demo'); "
              "reclip_eval.evaluate(model, 'shapes-zeroshot')"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_level_help())
        return 0 if argv else 2
    if argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
        argv = argv[1:]
    else:
        module = importlib.import_module("reclip_eval.cli.evaluate_cmd")
    parser = module.add_parser()
    # Subcommands taking `key=value` overrides let them sit anywhere among the options.
    args = parser.parse_intermixed_args(argv) if getattr(module, "INTERMIXED", False) else parser.parse_args(argv)
    try:
        return int(module.run(args) or 0)
    except ReclipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # a listing piped into `head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at interpreter exit
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
