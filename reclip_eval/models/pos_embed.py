"""Resampling a learned 2-D position-embedding grid to another grid size (the paper's "weight upsampling").

Peers resample four different ways (timm: bicubic, no corner alignment, antialias on downsampling; open_clip:
bicubic, align_corners=False; ViTDet: bicubic every forward; big_vision: scipy zoom order 1, i.e. bilinear with
aligned corners, once at load). We do it once, when the image size changes, with one pure function; the mode is
recorded in the checkpoint's config.json (`pos_embed_resample`). `resize_pos_embed` is the one place that decides
a resize (the checkpoint loader and `VisionTower.set_image_size` both call it): grids from the configs, token count
checked, resampled, and the description that their one log line prints.

Default (bilinear, align_corners=True): the four corner embeddings are kept exactly, a constant grid stays
constant, and a linear ramp over the grid stays an exact linear ramp after up- or downsampling, because with
aligned corners bilinear interpolation is exact on functions that are linear in each axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from reclip_eval.models.config import PosEmbedResampleConfig, VisionConfig


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


@dataclass(frozen=True)
class PosEmbedResize:
    """A position embedding brought to a config's grid, and what was done to it."""

    pos_embed: torch.Tensor
    description: str | None  # e.g. "4x4 -> 8x8 (bilinear, align_corners=True, antialias=False)"; None: unchanged


def resize_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int], target: VisionConfig,
                     resample: PosEmbedResampleConfig) -> PosEmbedResize:
    """`pos_embed` (1, prefix + rows*columns, D) of grid `old_grid` (rows, columns), resampled to `target`'s grid.

    A token count that does not fit `old_grid` is a ValueError saying what was expected (callers add the source)."""
    prefix, new_grid = target.pos_embed_prefix, target.grid_hw
    expected = prefix + old_grid[0] * old_grid[1]
    if pos_embed.dim() != 3 or pos_embed.shape[1] != expected:
        raise ValueError(f"position embedding of shape {tuple(pos_embed.shape)} does not fit a "
                         f"{_grid(old_grid)} grid (expected {prefix} prefix + {old_grid[0] * old_grid[1]} tokens)")
    if tuple(old_grid) == new_grid:
        return PosEmbedResize(pos_embed, None)
    resampled = resample_pos_embed(pos_embed, old_grid, new_grid, num_prefix=prefix, mode=resample.mode,
                                   align_corners=resample.align_corners, antialias=resample.antialias)
    description = (f"{_grid(old_grid)} -> {_grid(new_grid)} ({resample.mode}, align_corners={resample.align_corners}, "
                   f"antialias={resample.antialias})")
    return PosEmbedResize(resampled, description)


def _grid(grid: tuple[int, int]) -> str:
    return f"{grid[0]}x{grid[1]}"


def sincos_2d(grid_hw: tuple[int, int], width: int, *, class_row: bool = False,
              temperature: float = 10_000.0) -> np.ndarray:
    """Fixed 2-D sin-cos position embeddings, (1, [1 +] rows*columns, width) float32: the MoCo v3 formula as
    big_vision's and CLIPA's `posemb_sincos_2d` write it, [sin(x w), cos(x w), sin(y w), cos(y w)] with x the
    column, y the row and w = temperature ** -(i / (width/4 - 1)), i < width/4; `class_row` prepends CLIPA's zero
    row for the class token. One function for both backends, so they add the same numbers."""
    rows, columns = grid_hw
    y, x = np.mgrid[:rows, :columns]
    quarter = width // 4
    omega = 1.0 / temperature ** (np.arange(quarter) / (quarter - 1))
    x = np.einsum("m,d->md", x.reshape(-1), omega)
    y = np.einsum("m,d->md", y.reshape(-1), omega)
    table = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
    if class_row:
        table = np.concatenate([np.zeros((1, width)), table], axis=0)
    return table[None].astype(np.float32)


TEXT_RESAMPLE = "linear, align_corners=False, antialias=False"  # open_clip's resize_text_pos_embed (CLIPA's models)


def resample_text_pos_embed(pos_embed: torch.Tensor, length: int) -> torch.Tensor:
    """A text position table (1, L, D) resampled to (1, length, D) by 1-D linear interpolation without corner
    alignment, as open_clip's `resize_text_pos_embed` (which CLIPA's models load through); computed in float32,
    returned in the input dtype. The same length returns the input unchanged."""
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"text pos_embed must be (1, L, D), got shape {tuple(pos_embed.shape)}")
    if length < 1:
        raise ValueError(f"text length must be >= 1, got {length}")
    if pos_embed.shape[1] == length:
        return pos_embed
    table = pos_embed.float().permute(0, 2, 1)  # (1, D, L): interpolate along the positions
    table = F.interpolate(table, size=length, mode="linear", align_corners=False, antialias=False)
    return table.permute(0, 2, 1).to(pos_embed.dtype)
