"""The contrastive (InfoNCE) loss of the paper's eq. (1)-(2), single-process or over a data-parallel global batch."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(L_I2T + L_T2I) / 2 for L2-normalised (B, D) embeddings, where pair i is (image i, text i) and
    scale = 1/tau. The mean of the two directions is CLIP's convention; eq. (1)-(2) define each direction.

    Under torch.distributed each process holds B_local pairs of the global batch. Every process gathers all
    embeddings *with gradients* and computes its own rows against all columns (open_clip's gather_with_grad +
    local_loss): the mean of the per-process losses is the full-batch loss, and after DDP averages gradients,
    the gradients are the full-batch ones (tests/test_distributed_train.py).
    """
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world == 1:
        logits = scale * image_emb @ text_emb.t()  # (B images, B texts)
        labels = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    all_images, all_texts = _gather_with_grad(image_emb), _gather_with_grad(text_emb)
    local = image_emb.shape[0]
    labels = torch.arange(local, device=image_emb.device) + dist.get_rank() * local
    image_to_text = scale * image_emb @ all_texts.t()  # (B_local, B_global)
    text_to_image = scale * text_emb @ all_images.t()
    return (F.cross_entropy(image_to_text, labels) + F.cross_entropy(text_to_image, labels)) / 2
