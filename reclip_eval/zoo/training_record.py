"""What a checkpoint's training.json says its weights cost, as the `model.compute` fields of a results file.

Both trainers write a training.json (the CLIP trainer, reclip_eval/train/loop.py, and the detector's,
reclip_eval/detect/train.py), with different fields; this is the one reader of them, so a CLIP checkpoint and a
detector cannot report their cost two ways.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reclip_eval.checkpoint import TRAINING_NAME


def _device_hours(record: dict[str, Any]) -> float:
    # The detector trainer, and CLIP records written before device-hours were kept, have the (single-device) wall time.
    return record.get("device_hours", round(record.get("wall_time_s", 0) / 3600, 4))


def _train_gmacs(stages: list[dict[str, Any]]) -> float | None:
    """Forward MACs of both towers over all training samples (Table 2's convention), when every stage has them."""
    if not stages or any(s.get("gmacs_per_sample") is None for s in stages):
        return None
    return round(sum(s["gmacs_per_sample"] * s["samples_seen"] for s in stages), 1)


def training_compute(directory: Path | None) -> dict[str, Any]:
    """`train_device_hours`, `train_samples_seen`, `train_gmacs` (staged CLIP training only: the detector trainer
    counts no compute per sample) and `train_device` from `directory`/training.json; empty when there is none."""
    path = directory / TRAINING_NAME if directory is not None else None
    if path is None or not path.is_file():
        return {}
    record = json.loads(path.read_text(encoding="utf-8"))
    compute = {"train_device_hours": _device_hours(record),
               # the detector trainer counts images (one sample is one image with its boxes)
               "train_samples_seen": record.get("samples_seen", record.get("images_seen"))}
    if "stages" in record:
        compute["train_gmacs"] = _train_gmacs(record["stages"])
    compute["train_device"] = record.get("device")
    return compute
