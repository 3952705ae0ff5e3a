"""A newcomer's first commands (issue #31): they leave a clone as it was, and bad first inputs get one clear line.

The documented commands run with their cwd in a git repository holding a copy of this checkout's tracked files (the
working-tree versions, .gitignore included, so the test sees what is about to be committed): afterwards
`git status --porcelain` must be empty, as .ci/run checks after the README's two commands."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reclip_eval.cli.main import main

from .conftest import REPO


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def clone(tmp_path, monkeypatch) -> Path:
    """A git repository of this checkout's tracked files, committed, as the cwd."""
    root = tmp_path / "clone"
    for name in _git(REPO, "ls-files", "-z").split("\0"):
        source = REPO / name
        if name and source.is_file():  # a tracked file deleted in the working tree is not copied
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "copy")
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize("argv", [
    ["--model", "reclip-demo", "--task", "shapes-zeroshot"],  # README command 1 (its data: the synth_dir fixture's)
    ["flops", "--model", "reclip-64"],
    ["flops", "--recipe", "mask-112"],
    ["flops"],
])
def test_documented_commands_leave_the_clone_clean(clone, argv, synth_dir, capsys):
    if "--task" in argv:  # a small set of the task's world, generated once for the session
        argv = [*argv, "--data-dir", str(synth_dir), "--workers", "0"]
    assert main(argv) == 0, capsys.readouterr().err
    assert _git(clone, "status", "--porcelain") == ""
    written = sorted(p.relative_to(clone).as_posix() for p in (clone / "results").rglob("*.json"))
    assert written, "the command wrote no results file under ./results/"


def test_evaluating_a_local_checkpoint_writes_under_results_not_leaderboards(clone, tiny_checkpoint, synth_dir,
                                                                            capsys):
    """The issue's case: a model given by its path, whose results no committed file records."""
    argv = ["--model", str(tiny_checkpoint), "--task", "shapes-zeroshot", "--data-dir", str(synth_dir), "--workers", "0"]
    assert main(argv) == 0, capsys.readouterr().err
    assert _git(clone, "status", "--porcelain") == ""
    (written,) = (clone / "results").glob("*__shapes-zeroshot.json")
    assert "tiny" in written.name
