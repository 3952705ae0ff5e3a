"""The listings and the package import start fast: none of them imports torch, open_clip, torchvision or jax (each
checked in a fresh process, the way users run them); benchmarks/start_time.py measures the CPU time. Their output
reads well: help columns aligned, each layout named once, the task aliases listed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reclip_eval.cli.main import SUBCOMMANDS, main
from reclip_eval.eval.tasks import load_task

from .conftest import REPO

HEAVY = ("torch", "open_clip", "torchvision", "jax")

# Run `code` in a fresh interpreter, then print which heavy modules it imported.
_PROBE = """
import contextlib, io, json, sys
{code}
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}} & set({heavy!r}))))
"""


def _heavy_imports(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(code=code, heavy=HEAVY)], capture_output=True,
                         text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["models"], ["tasks"], ["recipes"]], ids=lambda a: a[0])
def test_listing_imports_no_heavy_framework(argv):
    code = ("from reclip_eval.cli.main import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    assert main({argv!r}) == 0")
    assert _heavy_imports(code) == []


def test_import_reclip_eval_imports_no_heavy_framework():
    assert _heavy_imports("import reclip_eval; reclip_eval.list_models(); reclip_eval.list_tasks()") == []


def test_models_listing_still_names_every_model_kind(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for kind in ("reclip", "open_clip", "hf_transformers", "big_vision", "reclip_detector"):
        assert f"| {kind} " in out, kind
    assert "openclip:ARCH" in out and "reclip-demo" in out


def test_top_level_help_columns_line_up(capsys):
    assert main(["--help"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ") and
            line.split()[0] in SUBCOMMANDS]
    assert len(rows) == len(SUBCOMMANDS)
    starts = {len(line) - len(line[2:].split(None, 1)[1]) for line in rows}  # where each description begins
    assert len(starts) == 1, rows


def test_tasks_listing_names_each_layout_once_and_the_aliases(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    task_rows = [line.split("|") for line in out.split("\n\n")[0].splitlines()[2:]]
    for row in task_rows:
        layouts = [name.strip() for name in row[3].split(",")]
        assert len(layouts) == len(set(layouts)), row
    # imagenet-v2's YAML lists class_folders twice (two folder layouts of the same kind): named once.
    assert [x.kind for x in load_task("imagenet-v2").data.layouts].count("class_folders") == 2
    imagenet_v2 = next(row for row in task_rows if row[1].strip() == "imagenet-v2")
    assert [name.strip() for name in imagenet_v2[3].split(",")].count("class_folders") == 1
    assert "| imagenet1k " in out and "CLIP_benchmark" in out
