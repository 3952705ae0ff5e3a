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
from reclip_eval.errors import DataError

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


# --- item 7: the data folders a newcomer makes and names ---------------------------------------------------------

SMALL = ["--sets", "zeroshot", "--zeroshot-per-class", "1", "--image-size", "32", "--workers", "1"]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _evaluate_on(checkpoint: Path, data: Path, tmp_path: Path) -> int:
    return main(["--model", str(checkpoint), "--task", "shapes-zeroshot", "--data-dir", str(data), "--workers", "0",
                 "--output", str(tmp_path / "results")])


def test_data_synth_defaults_to_the_world_the_tasks_use():
    """Every synthetic task's set, as `data synth --sets SET` writes it with no other option, is of the task's
    world (texture, caption grammar), and the evaluation sets are drawn with the tasks' seed."""
    from reclip_eval.cli.data_cmd import add_parser, synth_config
    from reclip_eval.data.synth.export import _effective
    from reclip_eval.eval.tasks import list_tasks

    synthetic = [task for task in list_tasks() if task.synth is not None]
    assert len(synthetic) >= 8
    for task in synthetic:
        made = _effective(synth_config(add_parser().parse_args(["synth", "--out", "D", "--sets", task.synth_set])),
                          task.synth_set)
        assert made.world == _effective(task.synth, task.synth_set).world, task.name
    assert synth_config(add_parser().parse_args(["synth", "--out", "D"])).seed == {
        task.synth.seed for task in synthetic if task.synth_set != "lvis"}.pop()


def test_a_folder_from_data_synth_is_evaluated_as_it_is(tiny_checkpoint, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["data", "synth", "--out", str(data), *SMALL]) == 0
    before = _files(data)
    assert _evaluate_on(tiny_checkpoint, data, tmp_path) == 0, capsys.readouterr().err
    assert _files(data) == before  # used, not regenerated
    (results,) = (tmp_path / "results").glob("*.json")
    assert f'"data_dir": "{data / "shapes-zeroshot"}"' in results.read_text()


def test_a_folder_of_another_world_is_refused_not_regenerated(tiny_checkpoint, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["data", "synth", "--out", str(data), *SMALL, "--no-fine-texture"]) == 0
    before = _files(data)
    capsys.readouterr()
    assert _evaluate_on(tiny_checkpoint, data, tmp_path) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"{data / 'shapes-zeroshot'} holds a synthetic zeroshot set" in err
    assert "fine_texture false there, true wanted" in err and "concise_captions" not in err
    assert f"`reclip-eval data synth --sets zeroshot --seed 1 --fine-texture --concise-captions --out {data}`" in err
    assert _files(data) == before
    assert not (tmp_path / "results").exists()


def test_a_stale_set_in_the_programs_own_cache_may_be_regenerated(tmp_path):
    """The cache's data folder holds only what the program generated there: a stale set is not the user's."""
    import dataclasses

    from reclip_eval.data.synth.export import synthesize
    from reclip_eval.eval.runner import check_data_root
    from reclip_eval.eval.tasks import load_task
    from reclip_eval.paths import cache_dir

    task = load_task("shapes-zeroshot")
    other_world = dataclasses.replace(task.synth, fine_texture=False, zeroshot_per_class=1, image_size=32)
    synthesize(cache_dir() / "data", other_world, sets=["zeroshot"])
    check_data_root(task, None)  # no error: locate_task_data regenerates it in place
    check_data_root(task, cache_dir() / "data")
    shutil.copytree(cache_dir() / "data", tmp_path / "mine")  # the same folder in a place of the user's: refused
    with pytest.raises(DataError, match="fine_texture false there"):
        check_data_root(task, tmp_path / "mine")


def test_a_missing_data_dir_is_refused_not_created(tiny_checkpoint, tmp_path, capsys):
    typo = tmp_path / "dta"
    assert _evaluate_on(tiny_checkpoint, typo, tmp_path) == 2
    err = capsys.readouterr().err
    assert f"error: --data-dir {typo}: no such folder" in err and len(err.strip().splitlines()) == 1, err
    assert not typo.exists()


# --- item 7: one flag style, names, and what the commands show -------------------------------------------------


def test_train_takes_the_recipe_as_a_flag_as_detect_train_does_and_the_older_form_still(tmp_path, synth_dir, capsys):
    common = ["--data-dir", str(synth_dir), "--device", "cpu", "--workers", "0", "stages.0.batch_size=4",
              *(f"stages.{i}.{key}={value}" for i in (0, 1) for key, value in (("steps", 1), ("warmup_steps", 0)))]
    assert main(["train", "--recipe", "tiny-shapes", "--out", str(tmp_path / "flag"), *common]) == 0
    assert main(["train", "tiny-shapes", "--out", str(tmp_path / "positional"), *common]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "none"), "stages.0.steps=1"]) == 2
    assert "error: train: no recipe given: pass --recipe NAME" in capsys.readouterr().err
    assert main(["train", "--recipe", "tiny-shapes", "tiny-shapes", "--out", str(tmp_path / "two")]) == 2
    assert "'tiny-shapes': expected key=value overrides" in capsys.readouterr().err
    assert not (tmp_path / "none").exists() and not (tmp_path / "two").exists()


def test_card_takes_any_name_and_a_zoo_name_brings_its_paper_rows(tmp_path, capsys):
    checkpoint = tmp_path / "mine"
    shutil.copytree(REPO / "zoo" / "reclip-demo", checkpoint)
    assert main(["card", str(checkpoint), "--name", "my-clip"]) == 0
    card = (checkpoint / "README.md").read_text()
    assert "my-clip" in card and "These are the paper's numbers" not in card
    assert "note: 'my-clip' is not a named model (zoo/)" in capsys.readouterr().err
    assert main(["card", str(checkpoint), "--name", "reclip-6"]) == 0
    assert "did you mean 'reclip-64'" in capsys.readouterr().err
    assert main(["card", str(checkpoint), "--name", "reclip-64"]) == 0
    assert "These are the paper's numbers" in (checkpoint / "README.md").read_text()
    assert "note:" not in capsys.readouterr().err


def test_evaluation_header_names_the_jax_backend(tiny_checkpoint, synth_dir, tmp_path, capsys):
    assert main(["--model", str(tiny_checkpoint), "--task", "shapes-zeroshot", "--data-dir", str(synth_dir),
                 "--workers", "0", "--output", str(tmp_path), "--backend", "jax", "--device", "cpu"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.endswith("(fp32, jax backend on cpu)"), header


def test_detector_training_shows_a_progress_bar(tiny_checkpoint, tmp_path, capsys):
    from tests.detect_helpers import TINY_DETECTOR, write_tiny_lvis

    write_tiny_lvis(tmp_path / "data")
    overrides = [o for o in TINY_DETECTOR if not o.startswith("schedule.steps")] + ["schedule.steps=2"]
    assert main(["detect", "train", "--recipe", "detect-shapes", "--backbone", str(tiny_checkpoint), "--out",
                 str(tmp_path / "detector"), "--data-dir", str(tmp_path / "data"), "--device", "cpu",
                 *overrides]) == 0
    bar = capsys.readouterr().err
    assert "detector (" in bar and "2/2" in bar and "loss=" in bar, bar


def test_detector_training_refuses_a_missing_data_dir(tiny_checkpoint, tmp_path, capsys):
    typo = tmp_path / "dta"
    assert main(["detect", "train", "--recipe", "detect-shapes", "--backbone", str(tiny_checkpoint), "--out",
                 str(tmp_path / "detector"), "--data-dir", str(typo), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"error: --data-dir {typo}: no such folder" in err and len(err.strip().splitlines()) == 1, err
    assert not typo.exists()
