"""Multi-head attention pooling (big_vision's `MAPHead` in models/vit.py, SigLIP's image pooling): one learned probe
token attends to every output token of the tower; the attended vector gets a residual MLP on its LayerNorm.

    y = Attention(q = probe, k = v = tokens)        (the tower's head count; biases on q, k, v and the output)
    pooled = y + MLP(LayerNorm(y))                  (the tower's MLP width and activation)

There is no LayerNorm before the attention and none after the residual: the tower's own final norm (over the
tokens, or none at all in CLIPA) is all there is. The query and the key/value projections are separate weights here
(the probe is one token, the keys are many), stored as big_vision's query / key / value kernels by
flax_models/convert.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reclip_eval.models.transformer import MLP, layer_norm


class MAPHead(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float, activation: str = "gelu", eps: float = 1e-5):
        super().__init__()
        self.heads = heads
        self.probe = nn.Parameter(torch.zeros(1, 1, width))
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.norm = layer_norm(width, eps)
        self.mlp = MLP(width, int(width * mlp_ratio), activation)
        for name, p in self.named_parameters():  # as the blocks: normal(0.02) weights and probe, zero biases
            if name.endswith("bias") and not name.startswith("norm"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, width) the tower's output tokens -> (B, width)."""
        batch, tokens, width = x.shape
        head_dim = width // self.heads
        q = self.q(self.probe).expand(batch, -1, -1).reshape(batch, 1, self.heads, head_dim).transpose(1, 2)
        k, v = self.kv(x).reshape(batch, tokens, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        y = self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, 1, width))
        return (y + self.mlp(self.norm(y)))[:, 0]
