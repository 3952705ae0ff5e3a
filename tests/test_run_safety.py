"""Training runs never lose work (issue #12 items 1, 3, 13): a run writes only into a new, empty or own folder and
never deletes what it did not write; a kill while saving leaves the old or the new folder, and what it leaves
behind is cleaned on the next run; a damaged resume point is skipped for the newest intact one; a resume under
settings that change the data stream is refused; recipe values that would crash training are refused up front."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reclip_eval.cli.main import main
from reclip_eval.train.loop import train
from reclip_eval.train.recipe import StageConfig, load_recipe

from .conftest import REPO

SMALL = ["stages.0.steps=2", "stages.0.warmup_steps=0", "stages.1.steps=1", "stages.1.warmup_steps=0",
         "checkpoint_every=1"]
POINT_FILES = ("model.safetensors", "optimizer.safetensors", "state.json")


def _argv(out: Path, data: Path, *extra: str, workers: int = 0) -> list[str]:
    return ["train", "tiny-shapes", "--out", str(out), "--data-dir", str(data), "--device", "cpu", "--workers",
            str(workers), *SMALL, *extra]


def _crashed_run(out: Path, data: Path, monkeypatch) -> None:
    """A run that died after stage 0 (its last resume point written) while saving the stage checkpoint."""
    def power_cut(*args, **kwargs):
        raise RuntimeError("power cut")

    with monkeypatch.context() as m:
        m.setattr("reclip_eval.train.loop.save_checkpoint", power_cut)
        with pytest.raises(RuntimeError, match="power cut"):
            train(load_recipe("tiny-shapes", SMALL), out, data_dir=data, device="cpu", workers=0)
    assert sorted(p.name for p in (out / "resume").iterdir()) == ["stage0-step00000001", "stage0-step00000002"]


def test_folder_that_is_not_a_run_is_refused_and_left_alone(synth_dir, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "mydata").mkdir(parents=True)
    (out / "precious.txt").write_text("keep me")
    (out / "mydata" / "a.txt").write_text("mine")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    for extra in ((), ("--resume",)):
        capsys.readouterr()
        assert main(_argv(out, synth_dir, *extra)) == 2
        err = capsys.readouterr().err
        assert str(out) in err and "precious.txt" in err and "mydata/" in err and "--resume" in err, err
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_unfinished_run_keeps_user_files_and_is_cleaned_and_completed(synth_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _crashed_run(out, synth_dir, monkeypatch)
    # Without --resume the run's progress would be lost: refused, naming the latest point.
    assert main(_argv(out, synth_dir)) == 2
    err = capsys.readouterr().err
    assert "stage0-step00000002" in err and "--resume" in err, err
    # The user's files beside the run, and what killed saves of ours leave behind.
    (out / "notes.txt").write_text("mine")
    (out / "mydata").mkdir()
    (out / "mydata" / "a.txt").write_text("mine")
    (out / ".mine.abcd1234.tmp").write_text("looks like a temp file, but not of a name we write")
    (out / ".model.safetensors.k2j4h6g8.tmp").write_bytes(b"half a file")
    stale = [out / ".model.safetensors.k2j4h6g8.tmp", out / "resume" / ".stage0-step00000003.x1y2z3w4.tmp",
             out / "resume" / ".stage0-step00000001.a1b2c3d4.del", out / "stages" / ".lowres.q1w2e3r4.tmp"]
    for folder in stale[1:]:
        folder.mkdir(parents=True)
    assert main(_argv(out, synth_dir, "--resume")) == 0, capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and (out / "mydata" / "a.txt").read_text() == "mine"
    assert (out / ".mine.abcd1234.tmp").exists()
    assert not [p for p in stale if p.exists()]
    assert (out / "model.safetensors").is_file() and json.loads((out / "training.json").read_text())["stages"]
    # The kill came between stage 0's last resume point and its stage checkpoint: the resumed run writes it.
    assert (out / "stages" / "lowres" / "config.json").is_file()


def test_resume_on_a_finished_run_or_a_mistyped_out_stops(synth_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_argv(out, synth_dir)) == 0
    weights = out / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    for extra in (("--resume",), ()):
        capsys.readouterr()
        assert main(_argv(out, synth_dir, *extra)) == 2
        err = capsys.readouterr().err
        assert "finished" in err and str(weights) in err, err
    assert weights.stat().st_mtime_ns == stamp
    capsys.readouterr()
    assert main(_argv(tmp_path / "runn", synth_dir, "--resume")) == 2
    err = capsys.readouterr().err
    assert "nothing to resume" in err and str(tmp_path / "runn") in err, err
    assert not (tmp_path / "runn").exists()


@pytest.mark.parametrize("damage", ["truncated-weights", "undecodable-state", "missing-optimizer"])
def test_damaged_latest_resume_point_falls_back_to_the_newest_intact_one(damage, synth_dir, tmp_path, monkeypatch,
                                                                         caplog):
    out = tmp_path / "run"
    _crashed_run(out, synth_dir, monkeypatch)
    latest = out / "resume" / "stage0-step00000002"
    if damage == "truncated-weights":
        data = (latest / "model.safetensors").read_bytes()
        (latest / "model.safetensors").write_bytes(data[:len(data) // 2])
    elif damage == "undecodable-state":
        (latest / "state.json").write_bytes(b'{"stage_index": 0, "st')
    else:
        (latest / "optimizer.safetensors").unlink()
    with caplog.at_level(logging.INFO):
        _, reports = train(load_recipe("tiny-shapes", SMALL), out, data_dir=synth_dir, device="cpu", workers=0,
                           resume=True)
    assert [len(r.losses) for r in reports] == [2, 1]
    assert "skipping resume point" in caplog.text and "stage0-step00000002" in caplog.text
    assert "resuming at step 1" in caplog.text  # from stage0-step00000001


def test_no_intact_resume_point_is_one_error_then_a_new_run_may_start(synth_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _crashed_run(out, synth_dir, monkeypatch)
    for point in (out / "resume").iterdir():
        (point / "state.json").write_text("not json")
    assert main(_argv(out, synth_dir, "--resume")) == 2
    err = capsys.readouterr().err
    assert "no intact resume point" in err and "stage0-step00000001: state.json is not valid JSON" in err, err
    assert main(_argv(out, synth_dir)) == 0, capsys.readouterr().err


def test_resume_refuses_settings_that_change_the_data_stream(synth_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _crashed_run(out, synth_dir, monkeypatch)  # 0 loader workers
    assert main(_argv(out, synth_dir, "--resume", workers=2)) == 2
    err = capsys.readouterr().err
    assert "workers" in err and "used 0" in err and "has 2" in err, err
    fewer = tmp_path / "data"
    shutil.copytree(synth_dir / "shapes-train", fewer / "shapes-train")
    next(iter(sorted((fewer / "shapes-train").glob("*.tar")))).unlink()
    assert main(_argv(out, fewer, "--resume")) == 2
    assert "training shards" in capsys.readouterr().err
    # One worker draws the same stream as none (measured): accepted.
    assert main(_argv(out, synth_dir, "--resume", workers=1)) == 0, capsys.readouterr().err


_KILL_CHILD = r"""
import os, shutil, signal, sys
from pathlib import Path
import reclip_eval.atomic as atomic

mode, target, kill_at = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
calls = [0]
def hooked(fn):
    def call(*args, **kwargs):
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        calls[0] += 1
        return fn(*args, **kwargs)
    return call
for module, name in ((os, "replace"), (os, "rename"), (os, "unlink"), (shutil, "rmtree"), (atomic, "_exchange")):
    if hasattr(module, name):
        setattr(module, name, hooked(getattr(module, name)))
if mode == "replace":
    with atomic.atomic_dir(target) as tmp:
        (tmp / "version").write_text("new")
        (tmp / "weights").write_text("new")
else:  # prune a resume point the way the trainer does
    getattr(atomic, "retire_dir", shutil.rmtree)(target)
print("finished")
"""


def _kill_at_every_step(mode: str, target: Path, setup) -> Iterator[int]:
    """Run the child once per file-system step it takes, killed (SIGKILL) just before that step, after `setup()`
    made the starting state; yields each kill point for the caller to inspect what the kill left."""
    for kill_at in range(30):
        setup()
        done = subprocess.run([sys.executable, "-c", _KILL_CHILD, mode, str(target), str(kill_at)], cwd=REPO,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
        if "finished" in done.stdout:
            return
        assert done.returncode == -9, done.stderr
        yield kill_at
    raise AssertionError("the child never finished")


def _fresh(folder: Path, keep: str) -> None:
    for entry in folder.iterdir() if folder.is_dir() else []:
        if entry.name != keep:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def test_kill_during_a_folder_replace_leaves_the_old_or_the_new_folder(tmp_path):
    target, user_file = tmp_path / "ckpt", tmp_path / ".mine.abcd1234.tmp"

    def old_version():
        _fresh(tmp_path, keep=user_file.name)
        target.mkdir()
        (target / "version").write_text("old")

    user_file.write_text("not ours: a name we never write")
    for kill_at in _kill_at_every_step("replace", target, old_version):
        assert target.is_dir(), f"killed before step {kill_at}: no {target.name} at all"
        version = (target / "version").read_text()
        assert (version, (target / "weights").exists()) in (("old", False), ("new", True)), kill_at
    from reclip_eval.atomic import clean_stale  # what the next run does with what each kill left

    for kill_at in _kill_at_every_step("replace", target, old_version):
        clean_stale(tmp_path, {"ckpt"}.__contains__)
        assert sorted(p.name for p in tmp_path.iterdir()) == [user_file.name, "ckpt"], kill_at


def test_kill_while_pruning_never_leaves_a_half_deleted_point(tmp_path):
    resume = tmp_path / "resume"
    point = resume / "stage0-step00000004"

    def whole_point():
        shutil.rmtree(resume, ignore_errors=True)
        point.mkdir(parents=True)
        for name in POINT_FILES:
            (point / name).write_text("x")

    killed = 0
    for kill_at in _kill_at_every_step("prune", point, whole_point):
        killed += 1
        for folder in [p for p in resume.iterdir() if not p.name.startswith(".")]:  # named like a point: whole
            assert sorted(f.name for f in folder.iterdir()) == sorted(POINT_FILES), (kill_at, folder)
    assert killed >= 3  # before, during and after the deletion of the files
    from reclip_eval.atomic import clean_stale  # what the next run does with what each kill left

    for kill_at in _kill_at_every_step("prune", point, whole_point):
        clean_stale(resume)
        assert all(not p.name.startswith(".") for p in resume.iterdir()), kill_at


def test_recipe_values_that_crash_training_are_refused_together(tmp_path, capsys):
    bad = ["stages.0.batch_size=1", "stages.0.image_size=20", "stages.1.image_size=0", "stages.0.optimizer.lr=-1",
           "data.workers=-1"]
    assert main(["config", "show", "tiny-shapes", *bad]) == 2
    err = capsys.readouterr().err
    for key in ("stages[0].batch_size", "stages.lowres.image_size: 20 is not a multiple of the model's patch size 8",
                "stages[1].image_size", "stages[0].optimizer.lr", "data.workers"):
        assert key in err, (key, err)
    # train refuses the same, before any data is generated or any folder written.
    assert main(["train", "tiny-shapes", "--out", str(tmp_path / "run"), "--data-dir", str(tmp_path / "data"),
                 "--device", "cpu", *bad]) == 2
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()
    with pytest.raises(ValueError, match="batch_size: must be >= 2"):  # also for stages built in code
        StageConfig(name="x", image_size=16, text_length=8, batch_size=1, steps=1)


def test_override_error_names_the_command_line_not_the_file(tmp_path, capsys):
    assert main(["config", "show", "tiny-shapes", "stages.0.stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "command-line override stages.0.stepz=3" in err and "did you mean 'steps'" in err, err
    recipe = tmp_path / "mine.yaml"
    recipe.write_text((REPO / "training" / "tiny-shapes.yaml").read_text().replace("steps: 30", "stepz: 30"))
    assert main(["config", "show", str(recipe), "stages.0.steps=3"]) == 2
    err = capsys.readouterr().err
    assert f"invalid config {recipe}" in err and "command-line" not in err, err


def test_detector_training_refuses_a_folder_that_is_not_its_own(tiny_checkpoint, tmp_path, capsys):
    from tests.detect_helpers import TINY_DETECTOR

    foreign, trained = tmp_path / "mine", tmp_path / "trained"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    trained.mkdir()  # a detector written before run markers existed
    (trained / "config.json").write_text(json.dumps({"architecture": "reclip-detector"}))
    for out, expected in ((foreign, "precious.txt"), (trained, "holds a trained detector")):
        argv = ["detect", "train", "--recipe", "detect-shapes", "--backbone", str(tiny_checkpoint), "--out", str(out),
                "--data-dir", str(tmp_path / "data"), "--device", "cpu", *TINY_DETECTOR]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert str(out) in err and expected in err, err
    assert (foreign / "precious.txt").read_text() == "keep me" and sorted(os.listdir(trained)) == ["config.json"]
    assert not (tmp_path / "data").exists()  # refused before any data was touched


def test_rename_aside_fallback_is_put_back_on_the_next_run(tmp_path, monkeypatch):
    """Where folders cannot be swapped atomically the old one is renamed aside first; a kill right after that
    leaves no target, and the next run's cleanup puts the complete old folder back (the on-disk state simulated)."""
    import reclip_eval.atomic as atomic

    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    target = tmp_path / "ckpt"
    target.mkdir()
    with atomic.atomic_dir(target) as tmp:
        (tmp / "version").write_text("new")
    assert (target / "version").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["ckpt"]
    target.rename(tmp_path / ".ckpt.old-4242")  # killed between the two renames
    (tmp_path / ".ckpt.zq8x7w6v.tmp").mkdir()
    atomic.clean_stale(tmp_path, {"ckpt"}.__contains__)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"] and (target / "version").read_text() == "new"


def test_wandb_not_installed_is_one_clear_error(tmp_path, monkeypatch):
    from reclip_eval.errors import ConfigError
    from reclip_eval.train.metrics_log import MetricsLog

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(ConfigError, match=r"(?s)--wandb proj.*pip install wandb"):
        MetricsLog(tmp_path, False, wandb_project="proj")
