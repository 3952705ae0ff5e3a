"""Resampling a learned 2-D position-embedding grid to another grid size (the paper's "weight upsampling").

Peers resample four different ways (timm: bicubic, no corner alignment, antialias on downsampling; open_clip:
bicubic, align_corners=False; ViTDet: bicubic every forward; big_vision: scipy zoom order 1, i.e. bilinear with
aligned corners, once at load). We do it once, when the image size changes, with one pure function; the mode is
recorded in the checkpoint's config.json (`pos_embed_resample`).

Default (bilinear, align_corners=True): the four corner embeddings are kept exactly, a constant grid stays
constant, and a linear ramp over the grid stays an exact linear ramp after up- or downsampling, because with
aligned corners bilinear interpolation is exact on functions that are linear in each axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resample_pos_embed(
    pos_embed: torch.Tensor,
    old_hw: tuple[int, int],
    new_hw: tuple[int, int],
    *,
    num_prefix: int = 0,
    mode: str = "bilinear",
    align_corners: bool = True,
    antialias: bool = False,
) -> torch.Tensor:
    """Resample `pos_embed` of shape (num_prefix + H*W, D) or (1, num_prefix + H*W, D) from grid `old_hw` to `new_hw`.

    Prefix tokens (a class token) are passed through unchanged; the grid is interpolated in float32 and returned
    in the input dtype. Non-square grids are supported. Same size returns the input unchanged.
    """
    batched = pos_embed.dim() == 3
    pe = pos_embed[0] if batched else pos_embed
    if pe.dim() != 2:
        raise ValueError(f"pos_embed must be (N, D) or (1, N, D), got shape {tuple(pos_embed.shape)}")
    old_h, old_w = old_hw
    new_h, new_w = new_hw
    expected = num_prefix + old_h * old_w
    if pe.shape[0] != expected:
        raise ValueError(
            f"pos_embed has {pe.shape[0]} tokens, expected {num_prefix} prefix + {old_h}x{old_w} grid = {expected}"
        )
    if (old_h, old_w) == (new_h, new_w):
        return pos_embed
    prefix, grid = pe[:num_prefix], pe[num_prefix:]
    dim = grid.shape[-1]
    grid = grid.float().reshape(1, old_h, old_w, dim).permute(0, 3, 1, 2)
    kwargs = {"align_corners": align_corners} if mode in ("bilinear", "bicubic") else {}
    grid = F.interpolate(grid, size=(new_h, new_w), mode=mode, antialias=antialias, **kwargs)
    grid = grid.permute(0, 2, 3, 1).reshape(new_h * new_w, dim).to(pe.dtype)
    out = torch.cat([prefix, grid], dim=0)
    return out.unsqueeze(0) if batched else out
