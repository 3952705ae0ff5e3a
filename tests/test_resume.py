"""Never lose work: a run killed with SIGKILL mid-stage resumes exactly, and the data stream can start at batch k."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from reclip_eval.data.shards import list_shards, train_batches
from reclip_eval.data.transforms import image_transform
from reclip_eval.models.config import PreprocessConfig
from reclip_eval.models.tokenizer import ClipTokenizer

from .conftest import REPO


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_skip_starts_at_batch_k(synth_dir, workers):
    shards = list_shards("shapes-train", synth_dir)
    kwargs = dict(transform=image_transform(16, PreprocessConfig()), tokenize=ClipTokenizer(16), batch_size=8,
                  seed=3, shuffle_buffer=50, workers=workers)
    full = train_batches(shards, **kwargs)
    reference = [next(full) for _ in range(7)]
    for k in (1, 4, 5):
        resumed = train_batches(shards, skip_batches=k, **kwargs)
        for expected in reference[k:k + 2]:
            got = next(resumed)
            assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1]), k


def _train_args(out, data):
    return [sys.executable, "-m", "reclip_eval", "train", "tiny-shapes", "--out", str(out), "--data-dir", str(data),
            "--device", "cpu", "--workers", "2", "stages.0.steps=40", "stages.0.warmup_steps=4",
            "stages.0.batch_size=64", "stages.1.steps=10", "stages.1.warmup_steps=2", "checkpoint_every=5",
            "save_dtype=float32"]


def test_sigkill_then_resume_continues_the_loss_curve_exactly(synth_dir, tmp_path):
    env = {**os.environ, "RECLIP_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    whole = subprocess.run(_train_args(tmp_path / "whole", synth_dir), capture_output=True, text=True, env=env,
                           cwd=REPO, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(_train_args(killed_dir, synth_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, cwd=REPO)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            points = sorted((killed_dir / "resume").glob("stage0-step*")) if (killed_dir / "resume").is_dir() else []
            if any(int(p.name[-8:]) >= 15 for p in points):
                break
            assert proc.poll() is None, "the run finished before it could be killed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed_dir / "model.safetensors").exists()  # it really died mid-run

    resumed = subprocess.run(_train_args(killed_dir, synth_dir) + ["--resume"], capture_output=True, text=True,
                             env=env, cwd=REPO, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at step" in resumed.stderr
    # Step for step. Not bit for bit: CPU float reductions depend on memory alignment, so even two uninterrupted
    # runs can differ in the last bits; a wrong data position or lost optimizer state differs by orders more.
    one = json.loads((tmp_path / "whole" / "training.json").read_text())
    two = json.loads((killed_dir / "training.json").read_text())
    for a, b in zip(one["stages"], two["stages"], strict=True):
        assert b["losses"] == pytest.approx(a["losses"], abs=2e-4), a["name"]
        assert a["samples_seen"] == b["samples_seen"] and len(a["losses"]) == len(b["losses"])
    from safetensors.torch import load_file

    whole_w, resumed_w = load_file(tmp_path / "whole" / "model.safetensors"), load_file(killed_dir / "model.safetensors")
    for name, tensor in whole_w.items():
        torch.testing.assert_close(resumed_w[name], tensor, rtol=1e-4, atol=1e-5)


def test_resume_refuses_another_recipe(synth_dir, tmp_path, monkeypatch):
    from reclip_eval.train.loop import TrainingError, train
    from reclip_eval.train.recipe import load_recipe

    overrides = ["stages.0.steps=4", "stages.0.warmup_steps=0", "stages.1.steps=2", "stages.1.warmup_steps=0",
                 "checkpoint_every=2"]

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr("reclip_eval.train.loop.save_checkpoint", crash)  # dies before any checkpoint is written
    with pytest.raises(RuntimeError, match="power cut"):
        train(load_recipe("tiny-shapes", overrides), tmp_path / "run", data_dir=synth_dir, device="cpu", workers=0)
    assert (tmp_path / "run" / "resume").is_dir()
    monkeypatch.undo()
    with pytest.raises(TrainingError, match="written by another recipe"):
        train(load_recipe("tiny-shapes", overrides + ["seed=7"]), tmp_path / "run", data_dir=synth_dir,
              device="cpu", workers=0, resume=True)
    _, reports = train(load_recipe("tiny-shapes", overrides), tmp_path / "run", data_dir=synth_dir, device="cpu",
                       workers=0, resume=True)
    assert [len(r.losses) for r in reports] == [4, 2]


def test_resume_point_with_positional_optimizer_state_still_loads(tmp_path):
    """Resume points written before optimizer states were keyed by parameter name (ids 0..n-1) load as before."""
    from reclip_eval.train.optim import build_optimizer
    from reclip_eval.train.recipe import OptimizerConfig
    from reclip_eval.train.resume import latest_resume_point, load_optimizer_and_rng, save_resume_point

    from .contrastive_batch import tiny_batch, tiny_model

    model = tiny_model()
    optimizer = build_optimizer(model, OptimizerConfig(name="adamw", lr=1e-3))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    image, text, scale = model(*tiny_batch())
    (image @ text.t() * scale).sum().backward()
    optimizer.step()
    save_resume_point(tmp_path, model_state=model.state_dict(), optimizer_state=optimizer.state_dict(),
                      scheduler=scheduler.state_dict(), stage_index=0, step=1, reports=[], keep=1, recipe_yaml="")
    fresh = build_optimizer(model, OptimizerConfig(name="adamw", lr=1e-3))
    load_optimizer_and_rng(latest_resume_point(tmp_path), model, fresh,
                           torch.optim.lr_scheduler.LambdaLR(fresh, lambda step: 1.0))
    for param in model.parameters():
        for key, value in optimizer.state[param].items():
            assert torch.equal(fresh.state[param][key], value), key
