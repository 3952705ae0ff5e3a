"""Optimizers of the CLIP stages: AdamW, or Adafactor as in the paper, over the groups of the stage's
`optimizer.param_rules` (train/param_rules.py). The lr schedules are in train/schedule.py."""

from __future__ import annotations

import torch
from torch import nn

from reclip_eval.train.parallel import is_sharded
from reclip_eval.train.param_rules import ParamGroups, param_groups
from reclip_eval.train.recipe import OptimizerConfig
from reclip_eval.train.sharded_adafactor import ShardedAdafactor


def optimizer_groups(model: nn.Module, config: OptimizerConfig, source: str = "optimizer") -> ParamGroups:
    """`model`'s trainable parameters grouped by `config.param_rules`; an uncovered one is an error naming it."""
    return param_groups(model.named_parameters(), config.param_rules, lr=config.lr, weight_decay=config.weight_decay,
                        source=source)


def build_optimizer(model: nn.Module, config: OptimizerConfig, device: str = "cpu", *,
                    groups: ParamGroups | None = None, source: str = "optimizer") -> torch.optim.Optimizer:
    """The optimizer of `config` over `groups` (by default `optimizer_groups(model, config, source)`)."""
    groups = groups or optimizer_groups(model, config, source)
    if config.name == "adamw":
        fused = torch.device(device).type == "cuda"
        return torch.optim.AdamW(groups.groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=fused)
    if config.name == "adafactor":
        if any(is_sharded(p) for p in groups.parameters()):  # FSDP: torch's Adafactor cannot step DTensors
            return ShardedAdafactor(groups.groups, lr=config.lr)
        return torch.optim.Adafactor(groups.groups, lr=config.lr)
    raise ValueError(f"unknown optimizer {config.name!r}")
