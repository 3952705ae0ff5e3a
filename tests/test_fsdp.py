"""FSDP (data_parallel: fsdp): 2 sharded CPU processes (gloo) compute the loss, gradients and optimizer steps of one
process on the full batch; the trainer under torchrun follows the DDP loss curve and resumes exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from reclip_eval.errors import ConfigError
from reclip_eval.train.chunked import chunked_contrastive_backward
from reclip_eval.train.loss import contrastive_loss
from reclip_eval.train.optim import build_optimizer
from reclip_eval.train.recipe import OptimizerConfig, load_recipe

from .conftest import REPO
from .contrastive_batch import join_group, local_part, run_processes, tiny_batch, tiny_model

STEPS = 3


def _steps(net, module, optimizer, pixels, tokens, after_backward=lambda: None):
    """STEPS AdamW steps with clipping on one batch; returns the loss of each step and the first step's gradients."""
    losses, first_grads = [], None
    for _ in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        image, text, scale = net(pixels, tokens)
        loss = contrastive_loss(image, text, scale)
        loss.backward()
        after_backward()
        if first_grads is None:
            first_grads = {name: _full(p.grad).clone() for name, p in module.named_parameters()}
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.detach().clone())
    return losses, first_grads


def _full(tensor):
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def _worker(rank, world, init_file, out_file):
    from reclip_eval.train.parallel import prepare_stage_model

    with join_group(rank, world, init_file):
        model = tiny_model()
        stage_model = prepare_stage_model(model, "fsdp", "cpu")
        assert stage_model.sharded and stage_model.module is not model
        sharded = [n for n, p in stage_model.module.named_parameters() if hasattr(p, "full_tensor")]
        optimizer = build_optimizer(stage_model.module, OptimizerConfig(name="adamw", lr=1e-3))
        pixels, tokens = tiny_batch()
        part = local_part(rank, world)
        losses, grads = _steps(stage_model.net, stage_model.module, optimizer, pixels[part], tokens[part],
                               stage_model.average_unsharded_gradients)
        for loss in losses:
            dist.all_reduce(loss)
            loss /= world
        stage_model.write_back(model)  # the unsharded master copy, on every process
        # micro-batches of 2 (GradCache, train/chunked.py) through a fresh sharded model: the same first gradients
        chunked = prepare_stage_model(tiny_model(), "fsdp", "cpu")
        chunked_contrastive_backward(chunked.net, pixels[part], tokens[part], 2)
        chunked.average_unsharded_gradients()
        chunked_grads = {name: _full(p.grad) for name, p in chunked.module.named_parameters()}
        if rank == 1:
            torch.save({"losses": losses, "grads": grads, "weights": model.state_dict(), "sharded": sharded,
                        "chunked_grads": chunked_grads}, out_file)


def test_two_sharded_processes_equal_one_process(tmp_path):
    model = tiny_model()
    optimizer = build_optimizer(model, OptimizerConfig(name="adamw", lr=1e-3))
    losses, grads = _steps(model, model, optimizer, *tiny_batch())

    result = run_processes(_worker, tmp_path)
    # every parameter but the 0-d temperature is split across the two processes
    assert len(result["sharded"]) == len(grads) - 1 and "logit_scale" not in result["sharded"]
    for got, expected in zip(result["losses"], losses, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    for name, grad in grads.items():  # float32 summation order differs: ~1e-7 absolute noise
        torch.testing.assert_close(result["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(result["chunked_grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    for name, weight in model.state_dict().items():  # written back into the master copy of process 1
        torch.testing.assert_close(result["weights"][name], weight, rtol=1e-4, atol=1e-5, msg=name)


def _torchrun_args(out, data, *overrides, resume=False):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "reclip_eval",
            "train", "tiny-shapes", "--out", str(out), "--data-dir", str(data), "--device", "cpu", "--workers", "0",
            "stages.0.steps=10", "stages.0.warmup_steps=1", "stages.1.steps=2", "stages.1.warmup_steps=0",
            "checkpoint_every=2", *overrides] + (["--resume"] if resume else [])


def _env(tmp_path):
    return {**os.environ, "RECLIP_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def _torchrun(out, data, *overrides, resume=False):
    run = subprocess.run(_torchrun_args(out, data, *overrides, resume=resume), capture_output=True, text=True,
                         env=_env(out.parent), cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((out / "training.json").read_text())
    return [loss for stage in record["stages"] for loss in stage["losses"]], load_file(str(out / "model.safetensors"))


def _kill_after_first_resume_point(out, data, *overrides):
    """Start the run and SIGKILL the launcher and both workers once a resume point exists."""
    proc = subprocess.Popen(_torchrun_args(out, data, *overrides), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env(out.parent), cwd=REPO, start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and not list((out / "resume").glob("stage0-step*")):
            assert proc.poll() is None, "the run finished before it could be killed"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (out / "training.json").exists()


def test_fsdp_trainer_follows_ddp_and_resumes_exactly(synth_dir, tmp_path):
    ddp_losses, ddp_weights = _torchrun(tmp_path / "ddp", synth_dir)
    fsdp_losses, fsdp_weights = _torchrun(tmp_path / "fsdp", synth_dir, "data_parallel=fsdp")
    assert len(fsdp_losses) == 12
    # Two stages (16 px, then 32 px with the position embedding upsampled between them): same curve as DDP up to
    # float32 summation order.
    assert fsdp_losses == pytest.approx(ddp_losses, abs=1e-4)
    for name, weight in ddp_weights.items():
        torch.testing.assert_close(fsdp_weights[name], weight, rtol=1e-3, atol=1e-4, msg=name)

    # Kill a sharded run mid-stage, resume it: the uninterrupted run's curve and weights, step for step (up to the
    # last bits, as in tests/test_resume.py; a wrong data position or lost optimizer shard differs by far more).
    killed = tmp_path / "killed"
    _kill_after_first_resume_point(killed, synth_dir, "data_parallel=fsdp")
    resumed_losses, resumed_weights = _torchrun(killed, synth_dir, "data_parallel=fsdp", resume=True)
    assert resumed_losses == pytest.approx(fsdp_losses, abs=2e-4)
    for name, weight in fsdp_weights.items():
        torch.testing.assert_close(resumed_weights[name], weight, rtol=1e-4, atol=1e-5, msg=name)


def test_fsdp_with_adafactor_is_refused_when_the_recipe_loads():
    with pytest.raises(ConfigError, match=r"stages\.lowres\.optimizer\.name: adafactor cannot step FSDP"):
        load_recipe("reclip-64", ["data_parallel=fsdp"])
    # the finetune stage inherits the optimizer of the main phase
    assert load_recipe("reclip-64", ["data_parallel=fsdp", "stages.0.optimizer.name=adamw"]).data_parallel == "fsdp"
