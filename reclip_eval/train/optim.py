"""Optimizers (AdamW, or Adafactor as in the paper) and the warmup + decay learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from reclip_eval.train.parallel import is_sharded
from reclip_eval.train.recipe import OptimizerConfig, StageConfig
from reclip_eval.train.sharded_adafactor import ShardedAdafactor


def _decays(name: str, param: nn.Parameter) -> bool:
    # CLIP practice: no weight decay on gains, biases, embeddings tables' 1-d parts and the temperature.
    return param.ndim >= 2 and not name.endswith(("pos_embed", "cls_token"))


def build_optimizer(model: nn.Module, config: OptimizerConfig, device: str = "cpu") -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if _decays(name, param) else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.name == "adamw":
        fused = torch.device(device).type == "cuda"
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=fused)
    if config.name == "adafactor":
        if any(is_sharded(p) for p in decay + no_decay):  # FSDP: torch's Adafactor cannot step DTensors
            return ShardedAdafactor(groups, lr=config.lr)
        return torch.optim.Adafactor(groups, lr=config.lr)
    raise ValueError(f"unknown optimizer {config.name!r}")


def lr_factor(stage: StageConfig) -> Callable[[int], float]:
    """step -> multiplier of the base lr: linear warmup from 0 to start_lr_ratio over warmup_steps, then a linear
    or cosine decay to end_lr_ratio at the last step ("constant" stays at start_lr_ratio)."""
    warmup, total, start, end = stage.warmup_steps, stage.steps, stage.start_lr_ratio, stage.end_lr_ratio

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return start * (step + 1) / warmup
        if stage.schedule == "constant" or total <= warmup:
            return start
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if stage.schedule == "linear":
            return start - (start - end) * progress
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
