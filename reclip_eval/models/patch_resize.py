"""Resample a patch-embedding kernel to another patch size by FlexiViT's pseudo-inverse resize (Beyer et al. 2023,
big_vision models/proj/flexi/vit.py `resample_patchemb`).

Why: a model trained on a (h, w) token grid keeps that grid on images k times larger when its patch grows k times;
the new kernel is chosen so that a patch bilinearly upsampled k times embeds as the original patch did
(<x, w> = <resize(x), w_new>, exact for upsampling). The finetune ablation (issue #36, row h-flexi) uses it to let
the first high-resolution steps see the token grid the low-resolution model knows.

The resize is bilinear with half-pixel centres and no antialiasing (tf.image.resize's "bilinear", which big_vision
uses; F.interpolate's bilinear with align_corners=False is the same map). Computed in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _resize_matrix(old_hw: tuple[int, int], new_hw: tuple[int, int]) -> torch.Tensor:
    """(new_h * new_w, old_h * old_w): the linear map of the bilinear resize of one channel."""
    basis = torch.eye(old_hw[0] * old_hw[1], dtype=torch.float64).reshape(-1, 1, *old_hw)
    resized = F.interpolate(basis, size=new_hw, mode="bilinear", align_corners=False, antialias=False)
    return resized.reshape(basis.shape[0], -1).T


def resample_patch_kernel(kernel: torch.Tensor, new_hw: tuple[int, int]) -> torch.Tensor:
    """`kernel` (out, in, kh, kw), a Conv2d patch embedding, resampled to (out, in, new_h, new_w)."""
    if kernel.dim() != 4:
        raise ValueError(f"expected a (out, in, h, w) patch kernel, got shape {tuple(kernel.shape)}")
    old_hw = tuple(kernel.shape[2:])
    if old_hw == tuple(new_hw):
        return kernel
    matrix = _resize_matrix(old_hw, tuple(new_hw))  # x_new = M x
    # w_new = pinv(M^T) w, so that <M x, w_new> = <x, w> for every x when M has full column rank (upsampling).
    inverse = torch.linalg.pinv(matrix.T)
    flat = kernel.detach().to(torch.float64).reshape(-1, old_hw[0] * old_hw[1])
    return (flat @ inverse.T).reshape(*kernel.shape[:2], *new_hw).to(kernel.dtype)
