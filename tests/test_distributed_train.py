"""A 2-process (gloo, CPU) data-parallel step gives the same loss and the same gradients as one process on the
full batch: the contrastive loss gathers embeddings with gradients and DDP averages the gradients."""

import os

import torch

from reclip_eval.train.loss import contrastive_loss

from .contrastive_batch import (
    full_batch_reference,
    join_group,
    local_part,
    mean_over_processes,
    run_processes,
    tiny_batch,
    tiny_model,
)


def _worker(rank, world, init_file, out_file):
    with join_group(rank, world, init_file):
        model = torch.nn.parallel.DistributedDataParallel(tiny_model())
        pixels, tokens = tiny_batch()
        part = local_part(rank, world)
        image, text, scale = model(pixels[part], tokens[part])
        loss = contrastive_loss(image, text, scale)
        loss.backward()
        mean_loss = mean_over_processes(loss)
        if rank == 0:
            grads = {k: p.grad.clone() for k, p in model.module.named_parameters()}
            torch.save({"loss": mean_loss, "grads": grads}, out_file)


def test_two_process_loss_and_gradients_equal_one_process(tmp_path):
    model, loss = full_batch_reference()
    result = run_processes(_worker, tmp_path)
    torch.testing.assert_close(result["loss"], loss, rtol=1e-6, atol=1e-6)
    for name, param in model.named_parameters():
        # float32 summation order differs between the two set-ups: ~1e-7 absolute noise
        torch.testing.assert_close(result["grads"][name], param.grad, rtol=1e-4, atol=1e-6)


def test_torchrun_training_smoke(synth_dir, tmp_path):
    """The trainer under torchrun (2 CPU processes): DDP per stage, global batch split across processes."""
    import json
    import subprocess
    import sys

    from .conftest import REPO

    env = {**os.environ, "RECLIP_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "reclip_eval",
         "train", "tiny-shapes", "--out", str(tmp_path / "run"), "--data-dir", str(synth_dir), "--device", "cpu",
         "--workers", "0", "stages.0.steps=3", "stages.0.warmup_steps=0", "stages.1.steps=2",
         "stages.1.warmup_steps=0"], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert record["devices"] == 2 and record["samples_seen"] == 5 * 32
    assert (tmp_path / "run" / "stages" / "lowres" / "model.safetensors").is_file()
