"""Run one task on one model: locate (or generate) the data, dispatch on the task kind, assemble the results."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reclip_eval.data.synth.export import read_manifest
from reclip_eval.device import PRECISIONS
from reclip_eval.distributed import rank_and_size
from reclip_eval.errors import ConfigError
from reclip_eval.eval.outcome import TaskOutcome
from reclip_eval.eval.results import build_results, fingerprint_files
from reclip_eval.eval.task_kinds import task_kind
from reclip_eval.eval.tasks import TaskSpec, locate_task_data
from reclip_eval.zoo.adapter import ModelAdapter


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
        if self.precision not in PRECISIONS:
            problems.append(f"precision: expected {' or '.join(map(repr, PRECISIONS))}, got {self.precision!r}")
        if problems:
            raise ConfigError("evaluation options", problems)


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
    adapter.place(options.device, options.precision)  # the task runners see arrays, never a device
    data_root, layout = _locate_once(spec, options)
    run = task_kind(spec.kind).run  # the kinds register themselves (reclip_eval/eval/task_kinds.py)
    outcome: TaskOutcome = run(adapter, spec, data_root, layout, batch_size=options.batch_size,
                               workers=options.workers)
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
    # The adapter's own count: an image embedding, a detector's whole forward, or None where it cannot count.
    model["compute"] = {**(model.get("compute") or {}), "image_gmacs": adapter.image_gmacs()}
    return build_results(
        task=task_info, model=model, metrics=outcome.metrics, counts=outcome.counts,
        skipped=outcome.skipped, prompts=outcome.prompts, precision=options.precision, device=options.device,
        wall_time_s=time.perf_counter() - started, argv=argv,
    )
