"""The docs cannot drift from the CLI: every command in a shell block of README.md, docs/*.md and the miniature's
notes parses with the CLI's own parser (main.py's SUBCOMMANDS table, each module's add_parser()) and names models,
tasks and recipes that exist (recipe overrides included); scripts it runs exist. Python blocks compile, and the
README's Python example runs. The README's first block is what .ci/run and tests/test_demo.py run."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from reclip_eval.cli.main import SUBCOMMANDS
from reclip_eval.errors import ReclipError

from .conftest import REPO, run_cli
from .test_demo import README_COMMAND

DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "leaderboards" / "miniature-notes.md"]
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
EVALUATE_MODULE = "reclip_eval.cli.evaluate_cmd"  # main.py's module for the bare `reclip-eval --model M --task T`
SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}
OPENCLIP = "openclip:"


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the block's first line, 1-based
    language: str  # "" for an indented block
    text: str


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    words: list[str]


def code_blocks(path: Path) -> list[Block]:
    """Fenced blocks, and indented blocks that follow a blank line outside a list (markdown's code blocks)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)", lines[i])
        if fence:
            indent, marker, language = fence.groups()
            start, i = i + 1, i + 1
            while i < len(lines) and not lines[i].strip().startswith(marker):
                i += 1
            blocks.append(Block(path, start + 1, language.lower(),
                                "\n".join(line[len(indent):] for line in lines[start:i])))
            i += 1
            continue
        previous_text = next((line for line in reversed(lines[:i]) if line.strip()), "")
        in_list = re.match(r"^(\s+|[-*+] |\d+\. )", previous_text) is not None
        if lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()) and not in_list:
            start = i
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                i += 1
            blocks.append(Block(path, start + 1, "", "\n".join(line[4:] for line in lines[start:i]).strip("\n")))
            continue
        i += 1
    return blocks


def shell_commands(block: Block) -> list[Command]:
    """The simple commands of a shell block: `\\` continuations joined, comments dropped, split at `&&`, `;`, `|`;
    leading VAR=value assignments removed."""
    commands, pending, first = [], "", 0
    for offset, line in enumerate(block.text.splitlines()):
        if not pending:
            first = offset
        pending += line
        if pending.rstrip().endswith("\\"):
            pending = pending.rstrip()[:-1] + " "
            continue
        lexer = shlex.shlex(pending, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, "&&"]:
            if token in SHELL_OPERATORS:
                while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
                    words.pop(0)
                if words:
                    commands.append(Command(f"{block.path.relative_to(REPO)}:{block.line + first}", words))
                words = []
            else:
                words.append(token)
        pending = ""
    return commands


def cli_argv(words: list[str]) -> list[str] | None:
    """The reclip-eval arguments of a command (`reclip-eval ...`, `torchrun ... -m reclip_eval ...`, `python -m
    reclip_eval ...`), or None for another program."""
    if words[0] == "reclip-eval":
        return words[1:]
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1] == "reclip_eval" and Path(words[0]).name in ("torchrun", "python"):
            return words[i + 2:]
    return None


def parse(argv: list[str]) -> tuple[str, argparse.Namespace | None]:
    """Parse as reclip_eval/cli/main.py dispatches: a subcommand's own parser, else evaluation's. None for --help."""
    if not argv or argv[0] in ("-h", "--help"):
        return "main", None
    name = argv[0] if argv[0] in SUBCOMMANDS else "evaluate"
    module = importlib.import_module(SUBCOMMANDS[name][0] if name in SUBCOMMANDS else EVALUATE_MODULE)
    rest = argv[1:] if name in SUBCOMMANDS else argv
    parser = module.add_parser()
    parse_args = parser.parse_intermixed_args if getattr(module, "INTERMIXED", False) else parser.parse_args
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            return name, parse_args(rest)
    except SystemExit as e:
        if e.code == 0 and ("-h" in rest or "--help" in rest):
            return name, None
        raise AssertionError(f"does not parse: {stderr.getvalue().strip().splitlines()[-1:]}") from None


def _is_path(value: str) -> bool:
    return "/" in value or value.startswith((".", "~")) or value.endswith((".yaml", ".yml"))


def check_model(value: str) -> None:
    from reclip_eval.zoo.entries import load_entry
    from reclip_eval.zoo.model_kinds import prefix_form_of

    if value.startswith(OPENCLIP):
        import open_clip  # a peer the tests run anyway: its architecture table is the truth

        assert value[len(OPENCLIP):] in open_clip.list_models(), f"{value}: no such open_clip architecture"
    elif not (value.startswith("hf-hub:") or prefix_form_of(value) is not None or _is_path(value)):
        load_entry(value)


def check_pretrained_tag(model: str, tag: str) -> None:
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(model[len(OPENCLIP):])
    assert tag in tags, f"{model}: open_clip has no pretrained tag {tag!r} (it has {tags})"


def check_tasks(value: str) -> None:
    """Tasks and suites (`--task datacomp`), comma separated; paths pass."""
    from reclip_eval.eval.suites import plan_tasks

    names = [t for t in filter(None, (t.strip() for t in value.split(","))) if not _is_path(t)]
    if names:
        plan_tasks(",".join(names))


def check_recipe(value: str, overrides: list[str], detector: bool) -> None:
    """The recipe exists and takes the overrides (`stages.0.steps=20`, `data.shards=...`)."""
    if _is_path(value):
        return
    if detector:
        from reclip_eval.detect.config import load_detect_recipe

        load_detect_recipe(value, overrides)
    else:
        from reclip_eval.train.recipe import load_recipe

        load_recipe(value, overrides)


def check_names(name: str, args: argparse.Namespace) -> None:
    """Models, tasks and recipes that a parsed command names exist (paths, hf-hub: and prefix forms pass)."""
    for attribute in ("model", "backbone", "checkpoint", "name"):
        value = getattr(args, attribute, None)
        if isinstance(value, str) and not (attribute == "checkpoint" and name != "evaluate"):
            # Several models, comma separated (`--model a,b`), where the evaluation takes them.
            for model in value.split(",") if name == "evaluate" and attribute == "model" else [value]:
                check_model(model)
    if isinstance(getattr(args, "pretrained", None), str):
        check_pretrained_tag(args.model, args.pretrained)
    if isinstance(getattr(args, "task", None), str):
        check_tasks(args.task)
    if isinstance(getattr(args, "suite", None), str) and not _is_path(args.suite):  # leaderboard --suite NAME
        from reclip_eval.eval.suites import load_suite

        load_suite(args.suite)
    if name == "train":  # `train --recipe R k=v ...`, or the older `train R k=v ...`: the command's own reading
        from reclip_eval.cli.train_cmd import recipe_and_overrides

        check_recipe(*recipe_and_overrides(args.recipe, args.overrides), detector=False)
    elif isinstance(getattr(args, "recipe", None), str):
        check_recipe(args.recipe, getattr(args, "overrides", None) or [], detector=name == "detect")


def check_command(words: list[str]) -> None:
    argv = cli_argv(words)
    if argv is None:
        if words[0] in ("bash", "python", "python3") and len(words) > 1 and not words[1].startswith("-"):
            assert (REPO / words[1]).is_file(), f"{words[1]}: no such file in the repository"
        return
    name, args = parse(argv)
    if args is not None:
        check_names(name, args)


def all_blocks() -> list[Block]:
    return [block for path in DOC_FILES for block in code_blocks(path)]


ALL_COMMANDS = [command for block in all_blocks() if block.language in SHELL_LANGUAGES
                for command in shell_commands(block)]
CLI_COMMANDS = [command for command in ALL_COMMANDS if cli_argv(command.words) is not None]


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=[c.where for c in ALL_COMMANDS])
def test_documented_command_parses_and_names_what_exists(command):
    try:
        check_command(command.words)
    except (AssertionError, ReclipError) as e:
        pytest.fail(f"{command.where}: {shlex.join(command.words)}\n  {e}")


def test_every_doc_page_is_reached_and_the_checker_sees_commands_in_it():
    """A page the extractor misses would pass vacuously: each page has commands that were checked (all but the
    contributors' page reclip-eval commands), and the README links every docs page."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for path in DOC_FILES:
        checked = CLI_COMMANDS if path.name != "design.md" else ALL_COMMANDS
        assert any(c.where.startswith(f"{path.relative_to(REPO)}:") for c in checked), path
        if path.parent.name == "docs":
            assert f"](docs/{path.name})" in readme, f"README.md does not link docs/{path.name}"


@pytest.mark.parametrize("words, problem", [
    (["reclip-eval", "--model", "reclip-demo", "--task", "no-such-task"], "no-such-task"),
    (["reclip-eval", "--model", "no-such-model", "--task", "shapes-zeroshot"], "no-such-model"),
    (["reclip-eval", "--model", "reclip-demo,no-such-model", "--task", "datacomp"], "no-such-model"),
    (["reclip-eval", "--model", "reclip-demo", "--task", "datacomp,no-such-suite"], "no-such-suite"),
    (["reclip-eval", "train", "--recipe", "tiny-shapes", "--out", "runs/x", "stages.0.stepz=3"], "stepz"),
    (["reclip-eval", "train", "--recipe", "no-such-recipe", "--out", "runs/x"], "no-such-recipe"),
    (["reclip-eval", "--model", "reclip-demo", "--task", "shapes-zeroshot", "--no-such-flag"], "does not parse"),
    (["bash", "scripts/no-such-script.sh"], "no-such-script"),
    (["reclip-eval", "--model", "openclip:ViT-B-99", "--task", "imagenet", "--random-init"], "ViT-B-99"),
    (["reclip-eval", "--model", "openclip:ViT-B-32", "--pretrained", "laion9b", "--task", "imagenet"], "laion9b"),
])
def test_the_checker_rejects_what_does_not_exist(words, problem):
    with pytest.raises((AssertionError, ReclipError), match=re.escape(problem)):
        check_command(words)


def test_shell_blocks_are_split_like_a_shell():
    block = Block(REPO / "README.md", 1, "bash", "SEEDS=\"0 1\" bash scripts/miniature.sh  # comment\n"
                  "pip install -e '.[dev]' && reclip-eval --model a \\\n    --task b,c   # two tasks")
    assert [c.words for c in shell_commands(block)] == [
        ["bash", "scripts/miniature.sh"], ["pip", "install", "-e", ".[dev]"],
        ["reclip-eval", "--model", "a", "--task", "b,c"]]
    assert cli_argv(["torchrun", "--nproc_per_node=8", "-m", "reclip_eval", "train"]) == ["train"]


def test_design_page_draws_the_layers_that_test_layout_enforces():
    """docs/design.md's layer diagram (top layer first; names, then two or more spaces, then what they hold) is
    tests/test_layout.py's LAYERS, read from the top."""
    from .test_layout import LAYERS

    design = (REPO / "docs" / "design.md").read_text(encoding="utf-8")
    diagram = next(b for b in code_blocks(REPO / "docs" / "design.md")
                   if b.language == "text" and design.index("## Layering") < design.index(b.text))
    drawn = [set(re.split(r"\s{2,}", line.strip())[0].split()) for line in diagram.text.splitlines()
             if line and not line[0].isspace()]
    assert drawn == [units for units in reversed(LAYERS) if units != {"__main__", "__init__"}]


def test_relative_links_reach_files():
    for path in DOC_FILES:
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in target:
                assert (path.parent / target).exists(), f"{path.relative_to(REPO)}: link to {target} reaches nothing"


def test_python_blocks_compile():
    python = [block for block in all_blocks() if block.language in ("python", "py")]
    assert any(block.path.name == "README.md" for block in python)
    for block in python:
        compile(block.text, f"{block.path.relative_to(REPO)}:{block.line}", "exec")


def test_readme_python_example_runs(tmp_path):
    """The README's example, in a fresh process: the bundled demo on shapes-zeroshot (takes 10-30 s on a CPU)."""
    example = next(b for b in code_blocks(REPO / "README.md") if b.language == "python")
    work = tmp_path / "work"  # the data cache lies beside it (conftest's RECLIP_CACHE)
    work.mkdir()
    out = subprocess.run([sys.executable, "-c", example.text], cwd=work, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not list(work.iterdir()), "the example wrote files without being given an output folder"


def test_readme_stays_a_short_guide():
    """Issue #31: the README is a user's guide under 200 lines; depth belongs in docs/."""
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) < 200


def test_readme_first_block_is_the_quickstart_ci_and_test_demo_run():
    """.ci/run runs the first code block's two lines (its awk: the first run of 4-space-indented lines);
    tests/test_demo.py runs its evaluation on a fresh cache."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    "))
    block = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        block.append(line[4:])
    assert len(block) == 2 and block[1] == "pytest -q", block
    install, evaluate = block[0].split(" && ")
    assert install == "pip install -e '.[dev]'"
    assert shlex.split(evaluate) == ["reclip-eval", *README_COMMAND]


def test_readme_two_commands_run_at_tiny_scale(tmp_path):
    """The README's "Two commands" block, run as a user would (the training recipe cut to a few steps)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Two commands", 1)[1]
    block = next(b for b in code_blocks(REPO / "README.md") if b.text.splitlines()[0] in section)
    commands = [cli_argv(c.words) for c in shell_commands(block)]
    train = next(argv for argv in commands if argv[0] == "train")
    tiny = ["stages.0.steps=4", "stages.0.warmup_steps=1", "stages.1.steps=2", "stages.1.warmup_steps=0",
            "data.synth.train_samples=256", "data.synth.samples_per_shard=128"]
    out = run_cli(*train, *tiny, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    listing = [argv for argv in commands if argv[0] != "train" and "--task" not in argv]
    for argv in listing:
        out = run_cli(*argv, cwd=tmp_path)
        assert out.returncode == 0 and out.stdout.strip(), out.stderr[-3000:]
