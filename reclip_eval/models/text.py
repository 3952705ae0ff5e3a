"""Text tower: transformer over CLIP BPE tokens, pooled at the end-of-text token (causal) or by masked mean, or
(big_vision / CLIPA) unmasked at the last or first position or by the mean over every position."""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from reclip_eval.models.config import TextConfig
from reclip_eval.models.map_head import MAPHead
from reclip_eval.models.pos_embed import TEXT_RESAMPLE, resample_text_pos_embed
from reclip_eval.models.transformer import Transformer, init_transformer_, layer_norm

log = logging.getLogger(__name__)


def prefix_through(positions: torch.Tensor) -> int:
    """The fewest leading positions that hold each row's pooled position (`positions`: (B,) indices)."""
    return int(positions.max()) + 1 if positions.numel() else 0


def unpadded_prefix(tokens: torch.Tensor, pad_id: int = 0) -> int:
    """The fewest leading positions that hold every non-padding token of the batch (at least one)."""
    columns = (tokens != pad_id).any(dim=0).nonzero()
    return int(columns.max()) + 1 if columns.numel() else 1


# The pools of big_vision's and CLIPA's text towers, over the unmasked output (B, L, width): the last position
# ("sticky" end-of-sequence padding puts it there), the first, or the mean over every position, padding included
# (big_vision's "mean"; our masked "mean" leaves the padding out), or over every position but the first (CLIPA's
# "gap").
UNMASKED_POOLS = {
    "last": lambda x: x[:, -1],
    "first": lambda x: x[:, 0],
    "mean_all": lambda x: x.mean(dim=1),
    "mean_after_first": lambda x: x[:, 1:].mean(dim=1),
    "max_all": lambda x: x.amax(dim=1),
}


class TextTower(nn.Module):
    def __init__(self, config: TextConfig, embed_dim: int):
        super().__init__()
        self.config = config
        self.token_embed = nn.Embedding(config.vocab_size, config.width)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.context_length, config.width))
        self.transformer = Transformer(config.width, config.layers, config.heads, config.mlp_ratio,
                                       activation=config.activation, eps=config.layer_norm_eps)
        self.norm = layer_norm(config.width, config.layer_norm_eps)
        self.map_head = MAPHead(config.width, config.heads, config.mlp_ratio, config.activation,
                                config.layer_norm_eps) if config.pool == "map" else None
        self.proj = nn.Linear(config.width, embed_dim, bias=config.head_bias)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)
        init_transformer_(self.transformer, config.layers)
        nn.init.normal_(self.proj.weight, std=config.width**-0.5)
        if self.proj.bias is not None:
            nn.init.zeros_(self.proj.bias)

    def set_context_length(self, length: int) -> str | None:
        """Resize the position table to `length` rows (`resample_text_pos_embed`; a new Parameter: rebuild
        optimizers) and return what was done, or None when the length is already `length`."""
        old = self.config.context_length
        if length == old:
            return None
        with torch.no_grad():
            self.pos_embed = nn.Parameter(resample_text_pos_embed(self.pos_embed.detach(), length))
        self.config = dataclasses.replace(self.config, context_length=length)
        description = f"{old} -> {length} ({TEXT_RESAMPLE})"
        log.info("text length %d -> %d: resampling the text position embedding %s", old, length, description)
        return description

    def decisive_length(self, tokens: torch.Tensor) -> int | None:
        """How many leading positions of a tokenized batch decide every row's features: the batch cut there embeds
        the same (the padding after it cannot reach the pooled token). None where every position counts."""
        if self.config.pool == "eot":  # causal: a position sees only those before it; pooled at the end token
            return prefix_through(tokens.argmax(dim=-1))
        if self.config.pool == "mean":  # padding is masked as keys and left out of the mean
            return unpadded_prefix(tokens)
        # "last", "first", "mean_all": unmasked, so every padding token reaches the pooled position(s)
        return None

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
        elif self.config.pool in UNMASKED_POOLS:
            # No mask at all, as big_vision / CLIPA train it: the padding is part of the sequence.
            pooled = UNMASKED_POOLS[self.config.pool](self.norm(self.transformer(x)))
        elif self.config.pool == "map":  # unmasked too, over the normalised output (big_vision's text MAPHead)
            pooled = self.map_head(self.norm(self.transformer(x)))
        else:
            padding = tokens == 0
            x = self.norm(self.transformer(x, key_padding=padding))
            keep = (~padding).unsqueeze(-1).to(x.dtype)
            pooled = (x * keep).sum(1) / keep.sum(1).clamp_min(1)
        return self.proj(pooled)
