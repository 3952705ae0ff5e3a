"""Resume points: everything a killed run needs to continue exactly where it stopped.

    <out>/resume/stage1-step00000400/
        model.safetensors       model weights (at that stage's image size)
        optimizer.safetensors   the optimizer's tensors; state.json holds the rest of its state dict
        state.json              stage index, step, scheduler, RNG states, the stage reports so far (losses included)

Written atomically (temp dir + fsync + rename onto a new name), the last `keep` kept; older ones are renamed out of
the name pattern before they are deleted, so a kill never leaves a half-deleted point under a name read here. On
resume each point is verified (state.json parses, both safetensors files open and hold the expected tensors) and the
newest intact one is used, the others skipped with the reason logged. No pickles: tensors go to safetensors,
everything else to JSON. Weights and optimizer state are saved whole (unsharded), the optimizer state keyed by
parameter name: what lets FSDP cut it into shards again on resume. The data stream is positioned by skipping the batches already consumed
(`data/shards.py:train_batches(skip_batches=...)`), so the resumed loss curve equals the uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reclip_eval.atomic import atomic_dir, retire_dir
from reclip_eval.errors import ReclipError

log = logging.getLogger(__name__)
RESUME_DIR = "resume"
_NAME = re.compile(r"^stage(\d+)-step(\d{8})$")


@dataclass
class ResumePoint:
    path: Path
    stage_index: int
    step: int  # steps of that stage already done
    state: dict[str, Any]  # the rest of state.json


class ResumeError(ReclipError):
    """No usable resume point, or one written under settings that would not continue the run exactly."""


def resume_settings(workers: int, world_size: int, shards: list[str]) -> dict[str, Any]:
    """What the exact continuation of the data stream depends on besides the recipe (which is compared whole):
    the number of loader streams (0 and 1 worker give the same stream, measured), the process count (each process
    draws its own stream of batch_size / world pairs) and the shard files (names and sizes, not the folder, so
    moved data still resumes)."""
    listing = "\n".join(f"{Path(s).name} {Path(s).stat().st_size if Path(s).is_file() else '-'}" for s in shards)
    return {"workers": workers, "world_size": world_size,
            "shards": {"count": len(shards), "sha256": hashlib.sha256(listing.encode()).hexdigest()[:16]}}


def settings_mismatches(recorded: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """The settings of `given` that differ from `recorded` in a way that changes the loss curve, each named."""
    problems = []
    if recorded.get("backend", "torch") != given.get("backend", "torch"):
        problems.append(f"backend: the run was trained with --backend {recorded.get('backend', 'torch')}, this one "
                        f"is {given.get('backend', 'torch')} (their optimizer states differ)")
    if max(1, recorded["workers"]) != max(1, given["workers"]):
        problems.append(f"data loader workers: the run used {recorded['workers']}, this one has {given['workers']} "
                        f"(each worker is its own data stream; use --workers {recorded['workers']})")
    if recorded["world_size"] != given["world_size"]:
        problems.append(f"processes: the run used {recorded['world_size']}, this one has {given['world_size']} "
                        "(each process draws its own stream)")
    started, now = (recorded.get("init") or {}).get("sha256"), (given.get("init") or {}).get("sha256")
    if started != now:  # the weights come from the point; the architecture is built from the init's config
        problems.append(f"init: the run started from weights {started or 'of its seed'}, this one's init has "
                        f"{now or 'none'} (sha256)")
    if recorded["shards"] != given["shards"]:
        problems.append(f"training shards: the run read {recorded['shards']['count']} files (fingerprint "
                        f"{recorded['shards']['sha256']}), this one finds {given['shards']['count']} "
                        f"({given['shards']['sha256']}); check --data-dir")
    return problems


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
                      scheduler: dict[str, Any], stage_index: int, step: int,
                      reports: list[Any], keep: int, recipe_yaml: str, settings: dict[str, Any] | None = None
                      ) -> Path:
    """Write what `gather_training_state` returned, with the scheduler's state dict, RNG states and reports."""
    from safetensors.torch import save_file

    target = Path(out_dir) / RESUME_DIR / f"stage{stage_index}-step{step:08d}"
    with atomic_dir(target) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()},
                  str(tmp / "model.safetensors"))
        tensors, skeleton = _flatten_optimizer(optimizer_state)
        tensors["__torch_rng__"] = torch.get_rng_state()
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        state = {"stage_index": stage_index, "step": step, "recipe": recipe_yaml, "optimizer": skeleton,
                 "scheduler": scheduler, "rng": rng_state(),
                 "reports": [asdict(r) for r in reports], "settings": settings}
        (tmp / "state.json").write_text(json.dumps(state))
    for old in list_resume_points(out_dir)[:-keep]:
        retire_dir(old.path)
    return target


def list_resume_points(out_dir: Path) -> list[ResumePoint]:
    """Every folder named like a resume point, oldest first (intact or not: see `unusable_reason`)."""
    root = Path(out_dir) / RESUME_DIR
    points = []
    for folder in root.iterdir() if root.is_dir() else []:
        match = _NAME.match(folder.name)
        if match and folder.is_dir():
            points.append(ResumePoint(folder, int(match[1]), int(match[2]), {}))
    return sorted(points, key=lambda p: (p.stage_index, p.step))


def _safetensors_keys(path: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:  # checks the header and that the file covers every tensor's bytes
        return set(f.keys())


def unusable_reason(point: ResumePoint, model_keys: set[str] | None = None) -> str | None:
    """Why `point` cannot be resumed from (None when intact); fills `point.state` from its state.json."""
    try:
        state = json.loads((point.path / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "state.json is missing"
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return f"state.json is not valid JSON ({e})"
    needed = {"stage_index", "step", "recipe", "optimizer", "scheduler", "rng", "reports"}
    if not isinstance(state, dict) or not needed <= set(state):
        return f"state.json lacks {sorted(needed - set(state) if isinstance(state, dict) else needed)}"
    if (state["stage_index"], state["step"]) != (point.stage_index, point.step):
        return f"state.json is for stage {state['stage_index']} step {state['step']}, not its folder's name"
    found = {}
    for name in ("model.safetensors", "optimizer.safetensors"):
        try:
            found[name] = _safetensors_keys(point.path / name)
        except FileNotFoundError:
            return f"{name} is missing"
        except Exception as e:  # safetensors raises its own SafetensorError (and OSError) for a damaged file
            return f"{name} cannot be read ({e})"
    if model_keys is not None and found["model.safetensors"] != model_keys:
        return f"model.safetensors holds other tensors than the model ({len(found['model.safetensors'])} vs " \
               f"{len(model_keys)})"
    wanted = {e["tensor"] for entries in state["optimizer"]["state"].values() for e in entries.values()
              if "tensor" in e} | {"__torch_rng__"}
    if not wanted <= found["optimizer.safetensors"]:
        return f"optimizer.safetensors lacks {len(wanted - found['optimizer.safetensors'])} tensors"
    point.state = state
    return None


def latest_resume_point(out_dir: Path, model_keys: set[str] | None = None) -> ResumePoint | None:
    """The newest intact resume point (None when there is none at all); damaged newer ones are skipped, each
    logged with the reason. Raises ResumeError when points exist but none is intact."""
    points = list_resume_points(out_dir)
    skipped = []
    for point in reversed(points):
        reason = unusable_reason(point, model_keys)
        if reason is None:
            if skipped:
                log.warning("resuming from %s instead (the newest intact resume point)", point.path.name)
            return point
        log.warning("skipping resume point %s: %s", point.path, reason)
        skipped.append(f"{point.path.name}: {reason}")
    if skipped:
        raise ResumeError(f"{Path(out_dir) / RESUME_DIR}: no intact resume point ({'; '.join(skipped)}); start the "
                          "run again without --resume")
    return None


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
