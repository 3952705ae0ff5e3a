"""ViT image tower: patch embedding, learned position embedding, pre-LN blocks, GAP (or class-token) pooling."""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from reclip_eval.models.config import ImageSize, PosEmbedResampleConfig, VisionConfig
from reclip_eval.models.pos_embed import resize_pos_embed
from reclip_eval.models.transformer import Transformer, init_transformer_

log = logging.getLogger(__name__)


def keep_random_tokens(x: torch.Tensor, mask_ratio: float) -> torch.Tensor:
    """(B, N, D) -> (B, K, D) with K = round(N * (1 - mask_ratio)) tokens drawn at random per sample."""
    if not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    batch, tokens, dim = x.shape
    keep = max(1, round(tokens * (1 - mask_ratio)))
    order = torch.rand(batch, tokens, device=x.device).argsort(dim=1)[:, :keep]
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, dim))


class VisionTower(nn.Module):
    def __init__(self, config: VisionConfig, embed_dim: int):
        super().__init__()
        self.config = config
        width = config.width
        self.patch_embed = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if config.pool == "cls" else None
        num_tokens = config.num_prefix_tokens + config.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, width))
        self.norm_pre = nn.LayerNorm(width) if config.ln_pre else nn.Identity()
        self.transformer = Transformer(width, config.layers, config.heads, config.mlp_ratio)
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embed_dim, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)
        init_transformer_(self.transformer, self.config.layers)
        nn.init.normal_(self.proj.weight, std=self.config.width**-0.5)

    def forward(self, pixels: torch.Tensor, mask_ratio: float = 0.0) -> torch.Tensor:
        """pixels: (B, 3, H, W) normalised, (H, W) == config.image_hw -> features (B, embed_dim), not normalised.

        `mask_ratio > 0` (training only) keeps a random subset of round(N * (1 - mask_ratio)) patch tokens per
        image, as FLIP does (the paper's Table 10 compares this with training on smaller images)."""
        height, width = self.config.image_hw
        if pixels.shape[-2:] != (height, width):
            raise ValueError(
                f"image tower expects {height}x{width} pixels, got {tuple(pixels.shape[-2:])}; "
                "call set_image_size() or load the checkpoint with image_size=..."
            )
        prefix = self.config.num_prefix_tokens
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2) + self.pos_embed[:, prefix:]  # (B, N, width)
        if mask_ratio > 0:
            x = keep_random_tokens(x, mask_ratio)
        if self.cls_token is not None:
            cls = self.cls_token + self.pos_embed[:, :prefix]
            x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm(self.transformer(self.norm_pre(x)))
        pooled = x[:, 0] if self.config.pool == "cls" else x.mean(dim=1)
        return self.proj(pooled)

    def set_image_size(self, image_size: ImageSize, resample: PosEmbedResampleConfig) -> None:
        """Change the input size (an int, or (height, width)), resampling the position-embedding grid; a changed
        grid is a new Parameter (rebuild optimizers). The same size changes nothing."""
        new_config = dataclasses.replace(self.config, image_size=image_size)
        with torch.no_grad():
            resize = resize_pos_embed(self.pos_embed.detach(), self.config.grid_hw, new_config, resample)
        if resize.description is not None:
            self.pos_embed = nn.Parameter(resize.pos_embed)
            log.info("image size %s -> %s px: resampling the position embedding %s", self.config.image_size,
                     new_config.image_size, resize.description)
        self.config = new_config
