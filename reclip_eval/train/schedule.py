"""Learning-rate schedules of both trainers, as kinds of one function: `lr_factor(schedule)` is step -> multiplier
of the base lr, and `build_scheduler` wraps it for an optimizer.

    linear, cosine, constant   the CLIP stages: linear warmup from 0 to start_ratio over warmup_steps (reached at
                               the last warmup step), then a linear or cosine decay to end_ratio at the last step
                               ("constant" stays at start_ratio)
    step                       the detector (ViTDet, detectron2's WarmupParamScheduler): x0.1 at each fraction of
                               the steps in decay_at, times a linear warmup from warmup_from at step 0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reclip_eval.registry import Registry

if TYPE_CHECKING:  # recipes are read (listings, zoo entries) without torch
    import torch

LrFactor = Callable[[int], float]


@dataclass(frozen=True)
class LrSchedule:
    kind: str  # one of SCHEDULE_KINDS
    steps: int
    warmup_steps: int = 0
    start_ratio: float = 1.0  # linear/cosine/constant: the peak, as a fraction of the base lr
    end_ratio: float = 0.0  # linear/cosine: where the decay ends
    decay_at: tuple[float, ...] = ()  # step: fractions of the steps where the lr drops x0.1
    warmup_from: float = 0.0  # step: the warmup's first factor (ViTDet: 0.001)


SCHEDULE_KINDS: Registry[Callable[[LrSchedule], LrFactor]] = Registry("lr schedule")


def lr_factor(schedule: LrSchedule) -> LrFactor:
    """step -> multiplier of the base lr, for `schedule.kind`."""
    return SCHEDULE_KINDS.get(schedule.kind)(schedule)


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: LrSchedule) -> torch.optim.lr_scheduler.LambdaLR:
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, lr_factor(schedule))


def _warmup_then(decay: Callable[[float, float, float], float]) -> Callable[[LrSchedule], LrFactor]:
    """The CLIP stages' shape: warmup to start_ratio, then `decay(start, end, progress in [0, 1])`."""

    def make(s: LrSchedule) -> LrFactor:
        def factor(step: int) -> float:
            if s.warmup_steps and step < s.warmup_steps:
                return s.start_ratio * (step + 1) / s.warmup_steps
            if s.steps <= s.warmup_steps:
                return s.start_ratio
            progress = min(1.0, (step - s.warmup_steps) / max(1, s.steps - s.warmup_steps))
            return decay(s.start_ratio, s.end_ratio, progress)

        return factor

    return make


SCHEDULE_KINDS.register("linear")(_warmup_then(lambda start, end, progress: start - (start - end) * progress))
SCHEDULE_KINDS.register("cosine")(_warmup_then(
    lambda start, end, progress: end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))))
SCHEDULE_KINDS.register("constant")(_warmup_then(lambda start, end, progress: start))


@SCHEDULE_KINDS.register("step")
def _step_decay(s: LrSchedule) -> LrFactor:
    def factor(step: int) -> float:
        value = 0.1 ** sum(step >= round(f * s.steps) for f in s.decay_at)
        if step < s.warmup_steps:
            value *= s.warmup_from + (1 - s.warmup_from) * step / s.warmup_steps
        return value

    return factor
