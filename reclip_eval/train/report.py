"""What a CLIP training run reports per stage (kept in resume points) and records in the checkpoint's training.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class StageReport:
    name: str
    image_size: int
    text_length: int
    batch_size: int
    steps: int
    samples_seen: int
    wall_time_s: float
    pos_embed_grid: tuple[int, int]
    gmacs_per_sample: float  # forward, image + text (models/flops.py); training costs about 3x this
    losses: list[float] = field(default_factory=list)  # one per step
    data_skipped: dict[str, dict[str, int]] = field(default_factory=dict)  # this process's (data/shards.py)
    # Per process, per loader worker: raw samples of its data stream used by the last resume point (dropped samples
    # make it more than steps x batch), what exact resume skips to.
    stream_positions: list[list[int]] = field(default_factory=list)
    param_rules: dict[str, int] = field(default_factory=dict)  # optimizer rule -> parameters it took
    # The tokens each tower computes on after reduction (models/token_reduction.py, models/text_reduction.py):
    # resume points written before these were recorded read as the defaults, which is what those runs did.
    image_tokens: str = "resize"
    image_tokens_kept: int | None = None  # patches kept plus any class token
    text_tokens: str = "truncate"  # with the tagger a syntax reduction used
    text_pos_embed: str | None = None  # the text position table's resize at this stage's start (text_positions)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StageReport:
        """The report as a resume point's state.json holds it (JSON: the grid is a list)."""
        return cls(**{**state, "pos_embed_grid": tuple(state["pos_embed_grid"])})


def training_record(recipe_name: str, reports: list[StageReport], device: str, devices: int = 1,
                    backend: str = "torch", init: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the checkpoint records about its training: stages, compute per sample, samples seen, device-hours, and
    the checkpoint the first stage started from (`init`: spec and sha256 of its weights; absent: random weights).
    `device` is a torch device ("cpu", "cuda:0": named by torch) or already a name (the jax trainer's)."""
    return {
        "recipe": recipe_name,
        **({"init": init} if init is not None else {}),
        "backend": backend,
        "device": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else device,
        "devices": devices,
        "device_hours": round(devices * sum(r.wall_time_s for r in reports) / 3600, 4),
        "stages": [
            {
                "name": r.name, "image_size": r.image_size, "text_length": r.text_length,
                "batch_size": r.batch_size, "steps": r.steps, "samples_seen": r.samples_seen,
                "gmacs_per_sample": round(r.gmacs_per_sample, 4),
                "device_hours": round(devices * r.wall_time_s / 3600, 4),
                "wall_time_s": round(r.wall_time_s, 2), "pos_embed_grid": list(r.pos_embed_grid),
                "loss_first": round(r.losses[0], 4) if r.losses else None,
                "loss_last": round(r.losses[-1], 4) if r.losses else None,
                "losses": [round(x, 4) for x in r.losses],
                "data_skipped": r.data_skipped,
                "param_rules": r.param_rules,
                "image_tokens": r.image_tokens, "image_tokens_kept": r.image_tokens_kept,
                "text_tokens": r.text_tokens, "text_tokens_kept": r.text_length,
                "text_pos_embed": r.text_pos_embed,
            }
            for r in reports
        ],
        "samples_seen": sum(r.samples_seen for r in reports),
        "wall_time_s": round(sum(r.wall_time_s for r in reports), 2),
    }
