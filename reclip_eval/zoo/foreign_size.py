"""Foreign ViTs (open_clip, transformers CLIPModel) at another image size: their position table resampled by our
one resampler (models/pos_embed.py), with our default mode, as for our own checkpoints.

Both libraries store the table as (1 + H*W, D): the class token's embedding first, then the square patch grid in
row-major order, which is the layout `resample_pos_embed` takes with `num_prefix=1`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from reclip_eval.errors import CheckpointError
from reclip_eval.models.config import PosEmbedResampleConfig
from reclip_eval.models.pos_embed import resample_pos_embed

log = logging.getLogger(__name__)

CLASS_TOKENS = 1


def resample_class_token_table(table: torch.Tensor, new_grid: int, source: str | Path, key: str) -> torch.Tensor:
    """(1 + g*g, D) -> (1 + new_grid**2, D); the class token's row is kept as it is."""
    old_grid = math.isqrt(table.shape[0] - CLASS_TOKENS)
    if table.dim() != 2 or CLASS_TOKENS + old_grid * old_grid != table.shape[0]:
        raise CheckpointError(f"{source}: {key} of shape {tuple(table.shape)} is not a class token plus a square "
                              "grid; cannot resample it to another image size")
    mode = PosEmbedResampleConfig()
    log.info("%s: resampling %s %dx%d -> %dx%d (%s, align_corners=%s)", source, key, old_grid, old_grid,
             new_grid, new_grid, mode.mode, mode.align_corners)
    return resample_pos_embed(table, (old_grid, old_grid), (new_grid, new_grid), num_prefix=CLASS_TOKENS,
                              mode=mode.mode, align_corners=mode.align_corners, antialias=mode.antialias)


def describe_resample(from_size: int, to_size: int) -> dict[str, Any] | None:
    """What the results record of the resampling (None when the model runs at its own size)."""
    if from_size == to_size:
        return None
    mode = PosEmbedResampleConfig()
    return {"from_image_size": from_size, "mode": mode.mode, "align_corners": mode.align_corners,
            "antialias": mode.antialias}
