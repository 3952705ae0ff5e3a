"""Resume points: everything a killed run needs to continue exactly where it stopped.

    <out>/resume/stage1-step00000400/
        model.safetensors       model weights (at that stage's image size)
        optimizer.safetensors   the optimizer's tensors; state.json holds the rest of its state dict
        state.json              stage index, step, scheduler, RNG states, the stage reports so far (losses included)

Written atomically (temp dir + fsync + rename), the last `keep` kept. No pickles: tensors go to safetensors,
everything else to JSON. Weights and optimizer state are saved whole (unsharded), the optimizer state keyed by
parameter name: what lets FSDP cut it into shards again on resume. The data stream is positioned by skipping the batches already consumed
(`data/shards.py:train_batches(skip_batches=...)`), so the resumed loss curve equals the uninterrupted one.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reclip_eval.atomic import atomic_dir

RESUME_DIR = "resume"
_NAME = re.compile(r"^stage(\d+)-step(\d{8})$")


@dataclass
class ResumePoint:
    path: Path
    stage_index: int
    step: int  # steps of that stage already done
    state: dict[str, Any]  # the rest of state.json


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, skeleton = {}, {"param_groups": state_dict["param_groups"], "state": {}}
    for pid, entries in state_dict["state"].items():
        skeleton["state"][str(pid)] = {}
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
                skeleton["state"][str(pid)][name] = {"tensor": f"{pid}.{name}"}
            else:
                skeleton["state"][str(pid)][name] = {"value": value}
    return tensors, skeleton


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], skeleton: dict) -> dict:
    state = {}
    for key, entries in skeleton["state"].items():
        state[key] = {name: tensors[e["tensor"]] if "tensor" in e else e["value"] for name, e in entries.items()}
    return {"state": state, "param_groups": skeleton["param_groups"]}


def gather_training_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer
                          ) -> tuple[dict[str, torch.Tensor], dict]:
    """(model state, optimizer state keyed by parameter name), unsharded, on the CPU of the first process (other
    processes get empty dicts). Collective under FSDP: every process must call it."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(module, options=options), get_optimizer_state_dict(module, optimizer, options=options)


def rng_state() -> dict[str, Any]:
    py = random.getstate()
    np_state = np.random.get_state()
    return {"python": [py[0], list(py[1]), py[2]],
            "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]}


def restore_rng(state: dict[str, Any], torch_state: torch.Tensor) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch_state)


def save_resume_point(out_dir: Path, *, model_state: dict[str, torch.Tensor], optimizer_state: dict,
                      scheduler: torch.optim.lr_scheduler.LRScheduler, stage_index: int, step: int,
                      reports: list[Any], keep: int, recipe_yaml: str) -> Path:
    """Write what `gather_training_state` returned, with the scheduler, RNG states and reports."""
    from safetensors.torch import save_file

    target = Path(out_dir) / RESUME_DIR / f"stage{stage_index}-step{step:08d}"
    with atomic_dir(target) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()},
                  str(tmp / "model.safetensors"))
        tensors, skeleton = _flatten_optimizer(optimizer_state)
        tensors["__torch_rng__"] = torch.get_rng_state()
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        state = {"stage_index": stage_index, "step": step, "recipe": recipe_yaml, "optimizer": skeleton,
                 "scheduler": scheduler.state_dict(), "rng": rng_state(),
                 "reports": [asdict(r) for r in reports]}
        (tmp / "state.json").write_text(json.dumps(state))
    for old in list_resume_points(out_dir)[:-keep]:
        shutil.rmtree(old.path, ignore_errors=True)
    return target


def list_resume_points(out_dir: Path) -> list[ResumePoint]:
    root = Path(out_dir) / RESUME_DIR
    points = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        match = _NAME.match(folder.name)
        if match and (folder / "state.json").is_file():
            points.append(ResumePoint(folder, int(match[1]), int(match[2]), {}))
    return sorted(points, key=lambda p: (p.stage_index, p.step))


def latest_resume_point(out_dir: Path) -> ResumePoint | None:
    points = list_resume_points(out_dir)
    if not points:
        return None
    point = points[-1]
    point.state = json.loads((point.path / "state.json").read_text())
    return point


def load_optimizer_and_rng(point: ResumePoint, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                           scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Restore the optimizer of `module`'s parameters (sharding it again under FSDP), the scheduler and the RNGs."""
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    tensors = load_file(str(point.path / "optimizer.safetensors"))
    state = _unflatten_optimizer(tensors, point.state["optimizer"])
    if any(isinstance(i, int) for group in state["param_groups"] for i in group["params"]):
        # written before optimizer states were keyed by parameter name: positional ids
        optimizer.load_state_dict({**state, "state": {int(k): v for k, v in state["state"].items()}})
    else:
        set_optimizer_state_dict(module, optimizer, state, options=StateDictOptions(full_state_dict=True))
    scheduler.load_state_dict(point.state["scheduler"])
    restore_rng(point.state["rng"], tensors["__torch_rng__"])


def load_model_weights(point: ResumePoint, model: torch.nn.Module) -> None:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(point.path / "model.safetensors")), strict=True)
