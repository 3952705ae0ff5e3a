"""FSDP (data_parallel: fsdp): 2 sharded CPU processes (gloo) compute the loss, gradients and optimizer steps (AdamW,
and Adafactor through ShardedAdafactor) of one process on the full batch, and resume them from a resume point; the
trainer under torchrun follows the DDP loss curve and a killed sharded run resumes onto its curve."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from reclip_eval.train.chunked import chunked_contrastive_backward
from reclip_eval.train.loss import contrastive_loss
from reclip_eval.train.optim import build_optimizer
from reclip_eval.train.recipe import OptimizerConfig
from reclip_eval.train.sharded_adafactor import ShardedAdafactor

from .conftest import REPO
from .contrastive_batch import join_group, local_part, mean_over_processes, run_processes, tiny_batch, tiny_model

STEPS = 3


def _steps(net, module, optimizer, pixels, tokens, after_backward=lambda: None, steps=STEPS):
    """Optimizer steps with clipping on one batch; returns the loss of each step and the first step's gradients."""
    losses, first_grads = [], None
    for _ in range(steps):
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


def _optimizer(module, name):
    return build_optimizer(module, OptimizerConfig(name=name, lr=1e-3))


def _sharded_training(rank, world, name, point_dir):
    """STEPS sharded steps, a resume point, then one more step from the live state and one from the resumed one."""
    from reclip_eval.train.parallel import prepare_stage_model
    from reclip_eval.train.resume import (
        gather_training_state,
        latest_resume_point,
        load_model_weights,
        load_optimizer_and_rng,
        save_resume_point,
    )

    model = tiny_model()
    stage_model = prepare_stage_model(model, "fsdp", "cpu")
    assert stage_model.sharded and stage_model.module is not model
    optimizer = _optimizer(stage_model.module, name)
    assert isinstance(optimizer, ShardedAdafactor) == (name == "adafactor")
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    pixels, tokens = tiny_batch()
    part = local_part(rank, world)

    def train(stage_model_, optimizer_, steps=STEPS):
        return _steps(stage_model_.net, stage_model_.module, optimizer_, pixels[part], tokens[part],
                      stage_model_.average_unsharded_gradients, steps)

    losses, grads = train(stage_model, optimizer)
    losses = [mean_over_processes(loss) for loss in losses]

    model_state, optimizer_state = gather_training_state(stage_model.module, optimizer)
    if rank == 0:
        save_resume_point(point_dir, model_state=model_state, optimizer_state=optimizer_state,
                          scheduler=schedule.state_dict(), stage_index=0, step=STEPS, reports=[], keep=1, recipe_yaml="")
    dist.barrier()
    point = latest_resume_point(point_dir)
    resumed_master = tiny_model()
    load_model_weights(point, resumed_master)
    resumed = prepare_stage_model(resumed_master, "fsdp", "cpu")
    resumed_optimizer = _optimizer(resumed.module, name)
    load_optimizer_and_rng(point, resumed.module, resumed_optimizer,
                           torch.optim.lr_scheduler.LambdaLR(resumed_optimizer, lambda step: 1.0))
    train(stage_model, optimizer, 1)
    train(resumed, resumed_optimizer, 1)
    stage_model.write_back(model)  # the unsharded master copy, on every process
    resumed.write_back(resumed_master)
    return losses, grads, model.state_dict(), resumed_master.state_dict()


def _worker(rank, world, init_file, out_file, name, point_dir):
    from reclip_eval.train.parallel import prepare_stage_model

    with join_group(rank, world, init_file):
        losses, grads, weights, resumed_weights = _sharded_training(rank, world, name, point_dir)
        # micro-batches of 2 (GradCache, train/chunked.py) through a fresh sharded model: the same first gradients
        chunked = prepare_stage_model(tiny_model(), "fsdp", "cpu")
        pixels, tokens = tiny_batch()
        part = local_part(rank, world)
        chunked_contrastive_backward(chunked.net, pixels[part], tokens[part], 2)
        chunked.average_unsharded_gradients()
        chunked_grads = {key: _full(p.grad) for key, p in chunked.module.named_parameters()}
        sharded = [n for n, p in chunked.module.named_parameters() if hasattr(p, "full_tensor")]
        if rank == 1:
            torch.save({"losses": losses, "grads": grads, "weights": weights, "resumed_weights": resumed_weights,
                        "sharded": sharded, "chunked_grads": chunked_grads}, out_file)


@pytest.mark.parametrize("name", ["adamw", "adafactor"])
def test_two_sharded_processes_equal_one_process(tmp_path, name):
    model = tiny_model()
    optimizer = _optimizer(model, name)
    losses, grads = _steps(model, model, optimizer, *tiny_batch(), steps=STEPS + 1)

    result = run_processes(_worker, tmp_path, name, str(tmp_path / "points"))
    # every parameter but the 0-d temperature is split across the two processes
    assert len(result["sharded"]) == len(grads) - 1 and "logit_scale" not in result["sharded"]
    for got, expected in zip(result["losses"], losses[:STEPS], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    for name_, grad in grads.items():  # float32 summation order differs: ~1e-7 absolute noise
        torch.testing.assert_close(result["grads"][name_], grad, rtol=1e-4, atol=1e-6, msg=name_)
        torch.testing.assert_close(result["chunked_grads"][name_], grad, rtol=1e-4, atol=1e-6, msg=name_)
    initial = tiny_model().state_dict()
    for name_, weight in model.state_dict().items():  # after STEPS + 1 steps, written back into the master copy
        # Compared as updates, each within 1% of its tensor's largest update: Adafactor moves some tensors by only
        # ~1e-6, less than a tolerance on the weights would notice. Not tighter: for a 1-d parameter Adafactor's
        # update is about grad / |grad|, so an element whose gradient is ~1e-6 turns the 1e-7 float noise of the
        # sharded sum into a ~0.2% difference (measured); per-shard statistics would be off by far more.
        update = weight - initial[name_]
        scale = 1e-2 * update.abs().max().item()
        assert scale > 0, name_
        torch.testing.assert_close(result["weights"][name_] - initial[name_], update, rtol=0, atol=scale, msg=name_)
        # the run resumed from the resume point took the same last step as the live one
        torch.testing.assert_close(result["resumed_weights"][name_], result["weights"][name_], rtol=0, atol=1e-4 * scale,
                                   msg=name_)


def test_sharded_adafactor_is_torchs_adafactor_on_unsharded_parameters():
    reference, ours = tiny_model(), tiny_model()
    torch_adafactor = torch.optim.Adafactor(reference.parameters(), lr=1e-2, weight_decay=0.01)
    sharded_adafactor = ShardedAdafactor(ours.parameters(), lr=1e-2, weight_decay=0.01)
    batch = tiny_batch()
    _steps(reference, reference, torch_adafactor, *batch)
    _steps(ours, ours, sharded_adafactor, *batch)
    for (name, expected), got in zip(reference.state_dict().items(), ours.state_dict().values(), strict=True):
        assert torch.equal(got, expected), name
    assert str(torch_adafactor.state_dict()) == str(sharded_adafactor.state_dict())


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


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (Linux /proc)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(c) for c in (task / "children").read_text().split()]
    return [pid] + [d for c in children for d in _process_tree(c)]


def _kill_after_first_resume_point(out, data, *overrides):
    """Start the run and SIGKILL the launcher and both workers once a resume point exists."""
    proc = subprocess.Popen(_torchrun_args(out, data, *overrides), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env(out.parent), cwd=REPO, start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and not list((out / "resume").glob("stage0-step*")):
            assert proc.poll() is None, "the run finished before it could be killed"
            time.sleep(0.02)
        # torchrun starts each worker in a session of its own: killing the launcher's group alone leaves them
        # running to the end (and a --resume then found a finished run). Kill the whole tree, workers first.
        for pid in reversed(_process_tree(proc.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
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
