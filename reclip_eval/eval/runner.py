"""Run one task on one model: locate (or generate) the data, dispatch on the task kind, assemble the results."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reclip_eval.data.synth.export import read_manifest
from reclip_eval.distributed import rank_and_size
from reclip_eval.errors import ConfigError
from reclip_eval.eval.detection import run_detection
from reclip_eval.eval.linear_probe import run_linear_probe
from reclip_eval.eval.outcome import TaskOutcome
from reclip_eval.eval.results import build_results, fingerprint_files
from reclip_eval.eval.retrieval import run_retrieval
from reclip_eval.eval.tasks import TaskSpec, locate_task_data
from reclip_eval.eval.zeroshot import run_zeroshot
from reclip_eval.registry import Registry
from reclip_eval.zoo.adapter import ModelAdapter

TASK_KINDS: Registry = Registry("task kind")
TASK_KINDS.register("zeroshot_classification")(run_zeroshot)
TASK_KINDS.register("retrieval")(run_retrieval)
TASK_KINDS.register("linear_probe")(run_linear_probe)
TASK_KINDS.register("detection")(run_detection)


@dataclass(frozen=True)
class EvalOptions:
    data_dir: Path | str | None = None  # a folder, or "hf-datasets:<id>"
    batch_size: int = 128
    workers: int = 2
    device: str = "cpu"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        # Checked here, before data or a model is touched: a bad value would otherwise fail deep in a DataLoader.
        problems = [f"{name}: expected an integer >= {low}, got {value!r}"
                    for name, value, low in (("batch_size", self.batch_size, 1), ("workers", self.workers, 0))
                    if not isinstance(value, int) or value < low]
        if self.precision not in ("fp32", "bf16"):
            problems.append(f"precision: expected 'fp32' or 'bf16', got {self.precision!r}")
        if problems:
            raise ConfigError("evaluation options", problems)


def image_gmacs(adapter: ModelAdapter, device: str) -> float:
    """GMACs (FLOPs / 2) of encoding one image at the adapter's size, counted by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    pixels = torch.zeros(1, 3, adapter.image_size, adapter.image_size, device=device)
    with FlopCounterMode(display=False) as counter:
        adapter.encode_image(pixels)
    return round(counter.get_total_flops() / 2e9, 6)


def _locate_once(spec: TaskSpec, options: EvalOptions):
    """Under torchrun the first process locates (and, for synthetic tasks, generates) the data; the others wait."""
    rank, world = rank_and_size()
    if world > 1 and rank != 0:
        torch.distributed.barrier()
    located = locate_task_data(spec, options.data_dir, workers=max(1, options.workers))
    if world > 1 and rank == 0:
        torch.distributed.barrier()
    return located


def evaluate(adapter: ModelAdapter, spec: TaskSpec, options: EvalOptions, argv: list[str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    data_root, layout = _locate_once(spec, options)
    run = TASK_KINDS.get(spec.kind)
    outcome: TaskOutcome = run(adapter, spec, data_root, layout, batch_size=options.batch_size,
                               workers=options.workers, device=options.device, precision=options.precision)
    local = isinstance(data_root, Path)
    task_info = {
        "name": spec.name,
        "kind": spec.kind,
        "spec_sha256": spec.spec_sha256(),
        "data_dir": str(data_root),
        "data_fingerprint": fingerprint_files(outcome.data_files, data_root) if local else f"hf-datasets:{data_root}",
        "split": layout.split,
        "synthetic_manifest": read_manifest(data_root) if local else None,  # generator version and settings
        **outcome.extra,
    }
    model = adapter.describe()
    count = getattr(adapter, "image_gmacs", None)  # a detector counts its whole forward, not an image embedding
    gmacs = count(options.device) if callable(count) else image_gmacs(adapter, options.device)
    model["compute"] = {**(model.get("compute") or {}), "image_gmacs": gmacs}
    return build_results(
        task=task_info, model=model, metrics=outcome.metrics, counts=outcome.counts,
        skipped=outcome.skipped, prompts=outcome.prompts, precision=options.precision, device=options.device,
        wall_time_s=time.perf_counter() - started, argv=argv,
    )
