"""SLIP's self-supervised branch (Mu, Kirillov, Wagner, Xie, "SLIP: Self-supervision meets Language-Image
Pre-training", ECCV 2022): two extra SimCLR views of each training image go through the image tower (without its
projection) and an MLP head, and the SimCLR loss between them is added to the CLIP loss.

As SLIP's released code (`models.py` `SLIP`, `losses.py` `SIMCLRLoss`) defines it:
- head: Linear(width, 4096) - BatchNorm - ReLU - Linear(4096, 4096) - BatchNorm - ReLU - Linear(4096, 256), its
  BatchNorms synchronised across processes (SyncBatchNorm under torchrun);
- loss: NT-Xent at temperature 0.1 over the global batch: view a of sample i against view b of every sample and
  view a of every other sample (the 2N - 2 negatives gathered from all processes, with gradients), both directions
  averaged; weight 1.0 beside the CLIP loss.

The head's BatchNorm normalises over the whole per-process batch, so the branch is not exact under micro-batches
(each would be normalised on its own): a recipe that asks for both is refused (train/stage_setup.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from reclip_eval.models.config import CLIPConfig
from reclip_eval.train.loss import contrastive_loss, gather_with_grad
from reclip_eval.train.recipe import SlipConfig, StageConfig

if TYPE_CHECKING:
    from reclip_eval.models.flops import SampleCompute


def simclr_head(width: int, config: SlipConfig) -> nn.Sequential:
    """SLIP's `_build_mlp(in_dim=vision_width, mlp_dim, out_dim)` (BatchNorm1d here; SyncBatchNorm under torchrun)."""
    return nn.Sequential(OrderedDict([
        ("layer1", nn.Linear(width, config.mlp_dim)), ("bn1", nn.BatchNorm1d(config.mlp_dim)), ("relu1", nn.ReLU()),
        ("layer2", nn.Linear(config.mlp_dim, config.mlp_dim)), ("bn2", nn.BatchNorm1d(config.mlp_dim)),
        ("relu2", nn.ReLU()),
        ("layer3", nn.Linear(config.mlp_dim, config.embed_dim)),
    ]))


def simclr_loss(embed_a: torch.Tensor, embed_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent between the two views' (B_local, D) head outputs (normalised here), over the global batch when
    torch.distributed is initialised: each process scores its own rows against every process's views, gathered with
    gradients, so the mean over processes is the full-batch loss (tests/test_slip.py)."""
    q_a, q_b = F.normalize(embed_a, dim=-1), F.normalize(embed_b, dim=-1)
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    k_a, k_b = (gather_with_grad(q_a), gather_with_grad(q_b)) if world > 1 else (q_a, q_b)
    local = q_a.shape[0]
    labels = torch.arange(local, device=q_a.device) + (dist.get_rank() * local if world > 1 else 0)
    self_mask = F.one_hot(labels, k_a.shape[0]).to(q_a.dtype) * 1e9  # a view is not its own negative
    logits_aa = q_a @ k_a.t() / temperature - self_mask
    logits_bb = q_b @ k_b.t() / temperature - self_mask
    logits_ab = q_a @ k_b.t() / temperature
    logits_ba = q_b @ k_a.t() / temperature
    loss_a = F.cross_entropy(torch.cat([logits_ab, logits_aa], dim=1), labels)
    loss_b = F.cross_entropy(torch.cat([logits_ba, logits_bb], dim=1), labels)
    return (loss_a + loss_b) / 2


def attach_slip_head(model: nn.Module, config: SlipConfig) -> None:
    """Give `model` (a CLIP) the head, initialised from torch's generator right after the model (reproducible)."""
    head = simclr_head(model.config.vision.width, config)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        head = nn.SyncBatchNorm.convert_sync_batchnorm(head)  # SLIP's: batch statistics of the global batch
    model.slip_head = head


@contextlib.contextmanager
def without_slip_head(model: nn.Module) -> Iterator[None]:
    """`model` without its head for the duration (a checkpoint is the dual encoder only; resume points keep it)."""
    head, model.slip_head = model.slip_head, None
    try:
        yield
    finally:
        model.slip_head = head


def split_views(pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """A SLIP stream's (B, 3 views, C, H, W) batch -> (the CLIP image, its two SimCLR views); a plain (B, C, H, W)
    batch -> (itself, None)."""
    if pixels.dim() == 4:
        return pixels, None
    return pixels[:, 0], (pixels[:, 1], pixels[:, 2])


def training_loss(outputs: tuple[torch.Tensor, ...], slip: SlipConfig | None) -> torch.Tensor:
    """The CLIP loss of the model's outputs, plus SLIP's weighted SimCLR loss when the outputs carry the views'."""
    image_emb, text_emb, scale, *views = outputs
    loss = contrastive_loss(image_emb.float(), text_emb.float(), scale.float())
    if views:
        loss = loss + slip.weight * simclr_loss(views[0].float(), views[1].float(), slip.temperature)
    return loss


def count_slip_gmacs(config: CLIPConfig, image_size: int, slip: SlipConfig) -> float:
    """Forward GMACs per sample of the branch: two views through the image tower's features and the head (counted
    as models/flops.py counts, on the meta device)."""
    from reclip_eval.models.clip import CLIP
    from reclip_eval.models.flops import gmacs_of
    from reclip_eval.models.presets import with_image_size

    config = with_image_size(config, image_size)
    with torch.device("meta"):
        model = CLIP(config)
        attach_slip_head(model, slip)
        pixels = torch.zeros(2, 3, *config.vision.image_hw)
    model.eval()  # BatchNorm in eval mode: the same matrix products, no batch statistics on meta tensors
    with torch.no_grad():
        return gmacs_of(lambda: model.slip_head(model.visual.features(pixels)))


def count_stage_compute(config: CLIPConfig, stage: StageConfig, slip: SlipConfig | None
                        ) -> tuple[SampleCompute, float]:
    """A stage's forward compute per sample, what both the training record and `reclip-eval flops` report: the
    towers' (`count_sample_compute`, after token reduction) with SLIP's branch, when the recipe has it, counted in
    the image GMACs; and the branch's own GMACs (0.0 without it)."""
    from reclip_eval.models.flops import count_sample_compute

    compute = count_sample_compute(config, stage.image_size, stage.text_length, stage.image_tokens)
    branch = count_slip_gmacs(config, stage.image_size, slip) if slip is not None else 0.0
    return dataclasses.replace(compute, image_gmacs=compute.image_gmacs + branch), branch
