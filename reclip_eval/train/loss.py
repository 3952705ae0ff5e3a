"""The contrastive (InfoNCE) loss of the paper's eq. (1)-(2), single-process or over a data-parallel global batch."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


class _GatherWithGrad(torch.autograd.Function):
    """All processes' (B, D) blocks concatenated in rank order; the backward sums each block's gradient over the
    processes that used it (reduce-scatter). torch.distributed.nn.functional.all_gather did this and is deprecated;
    its suggested replacement lives in a private module."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        out = x.new_empty((dist.get_world_size() * x.shape[0], *x.shape[1:]))
        _all_gather(out, x)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        mine = grad.new_empty((grad.shape[0] // dist.get_world_size(), *grad.shape[1:]))
        _reduce_scatter(mine, grad)
        return mine


# all_gather_single / reduce_scatter_single are current torch's names; older releases only have the *_tensor ones
# (same arguments), which current torch deprecates.
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Every process's (B, ...) block, concatenated in rank order; gradients flow back to each block's process."""
    return _GatherWithGrad.apply(x)


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
    all_images, all_texts = gather_with_grad(image_emb), gather_with_grad(text_emb)
    local = image_emb.shape[0]
    labels = torch.arange(local, device=image_emb.device) + dist.get_rank() * local
    image_to_text = scale * image_emb @ all_texts.t()  # (B_local, B_global)
    text_to_image = scale * text_emb @ all_images.t()
    return (F.cross_entropy(image_to_text, labels) + F.cross_entropy(text_to_image, labels)) / 2
