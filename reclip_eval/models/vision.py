"""ViT image tower: patch embedding, learned position embedding, pre-LN blocks, GAP (or class-token, first-token or
attention) pooling."""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from reclip_eval.models.config import ImageSize, PosEmbedResampleConfig, VisionConfig
from reclip_eval.models.map_head import MAPHead
from reclip_eval.models.pos_embed import resize_pos_embed, sincos_2d
from reclip_eval.models.token_reduction import ImageTokens, select_image_tokens
from reclip_eval.models.transformer import Transformer, init_transformer_, layer_norm

log = logging.getLogger(__name__)


def fixed_pos_embed(config: VisionConfig) -> torch.Tensor:
    """The sin-cos table of a `pos_embed: sincos2d` tower at its grid (with CLIPA's zero class row if it has one)."""
    # torch.tensor, not from_numpy: it follows a `with torch.device(...)` context (the FLOP counter's meta device).
    return torch.tensor(sincos_2d(config.grid_hw, config.width, class_row=config.pos_embed_prefix > 0))


class VisionTower(nn.Module):
    def __init__(self, config: VisionConfig, embed_dim: int):
        super().__init__()
        self.config = config
        width = config.width
        self.patch_embed = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size,
                                     bias=config.patch_bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if config.has_class_token else None
        if config.pos_embed == "sincos2d":
            # Not a parameter and not stored: rebuilt from the grid (also when the image size changes).
            self.register_buffer("pos_embed", fixed_pos_embed(config), persistent=False)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, config.pos_embed_prefix + config.num_patches, width))
        self.norm_pre = layer_norm(width, config.layer_norm_eps) if config.ln_pre else nn.Identity()
        self.transformer = Transformer(width, config.layers, config.heads, config.mlp_ratio,
                                       activation=config.activation, eps=config.layer_norm_eps)
        # Without a final norm (CLIPA's pool_type "0" and "map") the tokens are pooled as the blocks leave them.
        self.norm = layer_norm(width, config.layer_norm_eps) if config.final_norm else nn.Identity()
        self.map_head = MAPHead(width, config.heads, config.mlp_ratio, config.activation, config.layer_norm_eps) \
            if config.pool == "map" else None
        self.proj = nn.Linear(width, embed_dim, bias=config.head_bias)
        self._init_weights()

    def _init_weights(self) -> None:
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)
        init_transformer_(self.transformer, self.config.layers)
        nn.init.normal_(self.proj.weight, std=self.config.width**-0.5)
        if self.proj.bias is not None:
            nn.init.zeros_(self.proj.bias)

    def build_fixed_buffers(self) -> None:
        if self.config.pos_embed == "sincos2d":
            with torch.device("cpu"):
                self.pos_embed = fixed_pos_embed(self.config)

    def embed(self, pixels: torch.Tensor, image_tokens: ImageTokens | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """Patch + position embeddings, the class token (if any) in front: (B, prefix + N, width) (N after masking
        by `image_tokens`, drawn with `generator`: models/token_reduction.py).

        Where the class token's position comes from is the config's `class_token_position`: its own row of the
        table (OpenAI, CLIPA) or none (big_vision)."""
        c = self.config
        rows = c.pos_embed_prefix
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2) + self.pos_embed[:, rows:]  # (B, N, width)
        if image_tokens is not None:
            x = select_image_tokens(x, image_tokens, c.grid_hw, generator)
        if self.cls_token is not None:
            cls = self.cls_token + self.pos_embed[:, :rows] if rows else self.cls_token
            x = torch.cat([cls.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        return self.norm_pre(x)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The transformer's output tokens -> one normalised feature per image (before the projection)."""
        c = self.config
        if not c.norm_after_pool:
            x = self.norm(x)
        if c.pool == "map":
            pooled = self.map_head(x)  # every token, a class token included (CLIPA's MAP head sees it)
        elif c.pool in ("cls", "first"):
            pooled = x[:, 0]
        else:
            pooled = x[:, c.num_prefix_tokens:].mean(dim=1)
        return self.norm(pooled) if c.norm_after_pool else pooled

    def forward(self, pixels: torch.Tensor, image_tokens: ImageTokens | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """pixels: (B, 3, H, W) normalised, (H, W) == config.image_hw -> features (B, embed_dim), not normalised.

        `image_tokens` (training only) masks patch tokens, e.g. at random as FLIP does (the paper's Table 10
        compares this with training on smaller images); `generator` draws which."""
        height, width = self.config.image_hw
        if pixels.shape[-2:] != (height, width):
            raise ValueError(
                f"image tower expects {height}x{width} pixels, got {tuple(pixels.shape[-2:])}; "
                "call set_image_size() or load the checkpoint with image_size=..."
            )
        return self.proj(self.features(pixels, image_tokens, generator))

    def features(self, pixels: torch.Tensor, image_tokens: ImageTokens | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """The pooled (B, width) features before the projection (what SLIP's self-supervised head reads)."""
        return self.pool(self.transformer(self.embed(pixels, image_tokens, generator)))

    def set_image_size(self, image_size: ImageSize, resample: PosEmbedResampleConfig) -> None:
        """Change the input size (an int, or (height, width)), resampling the position-embedding grid; a changed
        grid is a new Parameter (rebuild optimizers). The same size changes nothing."""
        new_config = dataclasses.replace(self.config, image_size=image_size)
        if new_config.pos_embed == "sincos2d":  # a fixed table is recomputed, never resampled
            if new_config.grid_hw != self.config.grid_hw:
                self.pos_embed = fixed_pos_embed(new_config).to(self.pos_embed.device)
            self.config = new_config
            return
        with torch.no_grad():
            resize = resize_pos_embed(self.pos_embed.detach(), self.config.grid_hw, new_config, resample)
        if resize.description is not None:
            self.pos_embed = nn.Parameter(resize.pos_embed)
            log.info("image size %s -> %s px: resampling the position embedding %s", self.config.image_size,
                     new_config.image_size, resize.description)
        self.config = new_config
