"""Text tower: transformer over CLIP BPE tokens, pooled at the end-of-text token (causal) or by masked mean."""

from __future__ import annotations

import torch
from torch import nn

from reclip_eval.models.config import TextConfig
from reclip_eval.models.transformer import Transformer, init_transformer_, layer_norm


class TextTower(nn.Module):
    def __init__(self, config: TextConfig, embed_dim: int):
        super().__init__()
        self.config = config
        self.token_embed = nn.Embedding(config.vocab_size, config.width)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.context_length, config.width))
        self.transformer = Transformer(config.width, config.layers, config.heads, config.mlp_ratio,
                                       activation=config.activation, eps=config.layer_norm_eps)
        self.norm = layer_norm(config.width, config.layer_norm_eps)
        self.proj = nn.Linear(config.width, embed_dim, bias=config.head_bias)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)
        init_transformer_(self.transformer, config.layers)
        nn.init.normal_(self.proj.weight, std=config.width**-0.5)
        if self.proj.bias is not None:
            nn.init.zeros_(self.proj.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, L) CLIP BPE ids, 0-padded, L <= context_length -> features (B, embed_dim)."""
        length = tokens.shape[1]
        if length > self.config.context_length:
            raise ValueError(
                f"text tower has {self.config.context_length} positions, got {length} tokens; tokenize with "
                f"context_length <= {self.config.context_length}"
            )
        x = self.token_embed(tokens) + self.pos_embed[:, :length]
        if self.config.pool == "eot":
            x = self.norm(self.transformer(x, causal=True))
            # The end-of-text id (49407) is the largest id in the vocabulary, as in CLIP.
            pooled = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        elif self.config.pool == "last":
            # No mask at all, as big_vision / CLIPA train it: the padding is part of the sequence.
            pooled = self.norm(self.transformer(x))[:, -1]
        else:
            padding = tokens == 0
            x = self.norm(self.transformer(x, key_padding=padding))
            keep = (~padding).unsqueeze(-1).to(x.dtype)
            pooled = (x * keep).sum(1) / keep.sum(1).clamp_min(1)
        return self.proj(pooled)
