"""Pre-LayerNorm transformer blocks shared by both towers, with `F.scaled_dot_product_attention`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, *, causal: bool = False, key_padding: torch.Tensor | None = None) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        mask = None
        if key_padding is not None:  # (B, N) True where the token is padding
            mask = ~key_padding[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, width))


# GELU as the config names it: torch's exact erf form, or the tanh approximation big_vision and CLIPA train with.
ACTIVATIONS = {"gelu": lambda: nn.GELU(), "gelu_tanh": lambda: nn.GELU(approximate="tanh")}


def layer_norm(width: int, eps: float = 1e-5) -> nn.LayerNorm:
    return nn.LayerNorm(width, eps=eps)


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, activation: str = "gelu"):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = ACTIVATIONS[activation]()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float, activation: str = "gelu", eps: float = 1e-5):
        super().__init__()
        self.norm1 = layer_norm(width, eps)
        self.attn = Attention(width, heads)
        self.norm2 = layer_norm(width, eps)
        self.mlp = MLP(width, int(width * mlp_ratio), activation)

    def forward(self, x: torch.Tensor, *, causal: bool = False, key_padding: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), causal=causal, key_padding=key_padding)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, *, activation: str = "gelu",
                 eps: float = 1e-5):
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, activation, eps) for _ in range(layers))
        # Recompute each block's activations in the backward pass instead of storing them (less memory).
        self.activation_checkpointing = False

    def forward(self, x: torch.Tensor, *, causal: bool = False, key_padding: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            if self.activation_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, causal=causal, key_padding=key_padding, use_reentrant=False)
            else:
                x = block(x, causal=causal, key_padding=key_padding)
        return x


def init_transformer_(module: nn.Module, layers: int) -> None:
    """CLIP/GPT-2 style init: normal(0.02) weights, zero biases, output projections scaled by depth."""
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            std = 0.02 / (2 * layers) ** 0.5 if name.endswith(("attn.proj.weight", "mlp.fc2.weight")) else 0.02
            nn.init.normal_(p, std=std)
        elif name.endswith("bias"):
            nn.init.zeros_(p)
