"""The contrastive (InfoNCE) loss of the paper's eq. (1)-(2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(L_I2T + L_T2I) / 2 for L2-normalised (B, D) embeddings, where pair i is (image i, text i) and
    scale = 1/tau. The mean of the two directions is CLIP's convention; eq. (1)-(2) define each direction."""
    logits = scale * image_emb @ text_emb.t()  # (B images, B texts)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
