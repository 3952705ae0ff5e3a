"""The dual encoder of reclip_eval.models.clip in flax Linen, numerically the same function of the same weights.

Linen, not NNX: Linen's automatic module names are big_vision's parameter tree (`img/Transformer/encoderblock_0/
MultiHeadDotProductAttention_0/query/kernel`, `txt/Encoder_0/...`, `t`), so a big_vision or CLIPA checkpoint maps
onto it key for key; NNX would need a hand-written name map for every layout. The names below follow big_vision's
two_towers model (vit.py for the image tower, text_transformer.py for the text tower).

Where torch and flax defaults differ, the torch model's choice is taken on purpose, so the two backends agree to
float32 rounding (tests/test_flax_parity.py):
- LayerNorm eps 1e-5 (flax's default is 1e-6) with the two-pass variance (`use_fast_variance=False`; the one-pass
  E[x^2] - E[x]^2 loses digits when the mean is large);
- exact GELU (`jax.nn.gelu` defaults to the tanh approximation, torch's `nn.GELU` to the exact erf form);
- attention logits scaled by 1/sqrt(head_dim) before the softmax in float32, as torch's scaled_dot_product_attention.
Matmul precision is not set here: on a GPU/TPU XLA defaults to TF32/bf16 passes; parity runs wrap the call in
`jax.default_matmul_precision("highest")` (no effect on a CPU).

Initialisation follows reclip_eval.models (normal 0.02, output projections scaled by depth, zero biases; patch
embedding as torch's Conv2d default), so a model trained under either backend starts from the same distribution.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from reclip_eval.models.config import CLIPConfig, TextConfig, VisionConfig
from reclip_eval.models.pos_embed import sincos_2d
from reclip_eval.models.token_reduction import ImageTokens, block_offsets, block_shape, grid_window_bases


def _layer_norm(name: str, dtype: Any, eps: float) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=eps, use_fast_variance=False, dtype=dtype, name=name)


def _normal(std: float) -> nn.initializers.Initializer:
    return nn.initializers.normal(stddev=std)


def _torch_conv_bias_init(fan_in: int) -> nn.initializers.Initializer:
    """torch.nn.Conv2d's default bias: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def _head(embed_dim: int, width: int, bias: bool, dtype: Any) -> nn.Dense:
    """A tower's projection to the embedding space (big_vision's `head`), initialised as the torch model's."""
    return nn.Dense(embed_dim, use_bias=bias, kernel_init=_normal(width ** -0.5), dtype=dtype, name="head")


class MlpBlock(nn.Module):
    hidden: int
    out_std: float  # init std of the output projection (scaled by depth)
    activation: str = "gelu"  # "gelu" (exact) or "gelu_tanh", as the config says
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        x = nn.Dense(self.hidden, kernel_init=_normal(0.02), dtype=self.dtype, name="Dense_0")(x)
        x = nn.gelu(x, approximate=self.activation == "gelu_tanh")
        return nn.Dense(width, kernel_init=_normal(self.out_std), dtype=self.dtype, name="Dense_1")(x)


class Encoder1DBlock(nn.Module):
    """Pre-LayerNorm block: x + attn(LN(x)), then x + mlp(LN(x)) (reclip_eval.models.transformer.Block)."""

    heads: int
    mlp_ratio: float
    out_std: float
    activation: str
    eps: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        width = x.shape[-1]
        y = _layer_norm("LayerNorm_0", self.dtype, self.eps)(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.heads, kernel_init=_normal(0.02), out_kernel_init=_normal(self.out_std),
            dtype=self.dtype, deterministic=True, name="MultiHeadDotProductAttention_0")(y, y, mask=mask)
        x = x + y
        y = _layer_norm("LayerNorm_1", self.dtype, self.eps)(x)
        mlp = MlpBlock(int(width * self.mlp_ratio), self.out_std, self.activation, self.dtype, name="MlpBlock_0")
        return x + mlp(y)


class Encoder(nn.Module):
    """`layers` blocks named encoderblock_N, then (`final_norm`) the LayerNorm `encoder_norm` (big_vision's
    Encoder); without it the tower applies its own `encoder_norm` after pooling (CLIPA's image tower)."""

    layers: int
    heads: int
    mlp_ratio: float
    activation: str
    eps: float
    final_norm: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        out_std = 0.02 / math.sqrt(2 * self.layers)
        for i in range(self.layers):
            x = Encoder1DBlock(self.heads, self.mlp_ratio, out_std, self.activation, self.eps, self.dtype,
                               name=f"encoderblock_{i}")(x, mask)
        return _layer_norm("encoder_norm", self.dtype, self.eps)(x) if self.final_norm else x


class MAPHead(nn.Module):
    """Multi-head attention pooling, big_vision's MAPHead (reclip_eval.models.map_head says the computation)."""

    heads: int
    mlp_ratio: float
    activation: str
    eps: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, _, width = x.shape
        probe = self.param("probe", _normal(0.02), (1, 1, width))
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.heads, kernel_init=_normal(0.02), dtype=self.dtype, deterministic=True,
            name="MultiHeadDotProductAttention_0")(jnp.broadcast_to(probe, (batch, 1, width)).astype(x.dtype), x)
        mlp = MlpBlock(int(width * self.mlp_ratio), 0.02, self.activation, self.dtype, name="MlpBlock_0")
        return (y + mlp(_layer_norm("LayerNorm_0", self.dtype, self.eps)(y)))[:, 0]


class VisionTower(nn.Module):
    """ViT: patch embedding, position embedding, blocks, GAP, class-token, first-token or MAP pooling, projection (the
    options are the config's; see reclip_eval.models.vision for what each one means)."""

    config: VisionConfig
    embed_dim: int
    dtype: Any = None

    @nn.compact
    def __call__(self, pixels: jax.Array, image_tokens: ImageTokens | None = None) -> jax.Array:
        """pixels (B, H, W, 3), normalised, (H, W) == config.image_hw -> features (B, embed_dim), not normalised.

        `image_tokens` (training only) masks patch tokens as the torch tower does
        (reclip_eval.models.token_reduction), drawn with the `mask` rng stream (`apply(..., rngs={"mask": key})`)."""
        c = self.config
        if tuple(pixels.shape[1:3]) != c.image_hw:
            raise ValueError(f"image tower expects {c.image_hw[0]}x{c.image_hw[1]} pixels (B, H, W, 3), got shape "
                             f"{tuple(pixels.shape)}; build the model at that image size")
        fan_in = 3 * c.patch_size ** 2
        x = nn.Conv(c.width, (c.patch_size, c.patch_size), strides=(c.patch_size, c.patch_size), padding="VALID",
                    use_bias=c.patch_bias, kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
                    bias_init=_torch_conv_bias_init(fan_in), dtype=self.dtype, name="embedding")(pixels)
        batch = x.shape[0]
        x = x.reshape(batch, -1, c.width)  # row-major over the grid, as torch's flatten(2)
        rows = c.pos_embed_prefix
        if c.pos_embed == "sincos2d":
            pos = jnp.asarray(sincos_2d(c.grid_hw, c.width, class_row=rows > 0))
        else:
            pos = self.param("pos_embedding", _normal(0.02), (1, rows + c.num_patches, c.width))
        x = x + pos[:, rows:]
        if image_tokens is not None and image_tokens.masks:
            x = select_image_tokens(x, image_tokens, c.grid_hw, self.make_rng("mask"))
        if c.has_class_token:
            cls = self.param("cls", _normal(0.02), (1, 1, c.width))
            cls = cls + pos[:, :rows] if rows else cls
            x = jnp.concatenate([jnp.broadcast_to(cls, (batch, 1, c.width)).astype(x.dtype), x], axis=1)
        if c.ln_pre:
            x = _layer_norm("ln_pre", self.dtype, c.layer_norm_eps)(x)
        x = Encoder(c.layers, c.heads, c.mlp_ratio, c.activation, c.layer_norm_eps,
                    final_norm=c.final_norm and not c.norm_after_pool, dtype=self.dtype, name="Transformer")(x)
        if c.pool == "map":
            pooled = MAPHead(c.heads, c.mlp_ratio, c.activation, c.layer_norm_eps, self.dtype, name="MAPHead_0")(x)
        elif c.pool in ("cls", "first"):
            pooled = x[:, 0]
        else:
            pooled = x[:, c.num_prefix_tokens:].mean(axis=1)
        if c.norm_after_pool:
            pooled = _layer_norm("encoder_norm", self.dtype, c.layer_norm_eps)(pooled)
        return _head(self.embed_dim, c.width, c.head_bias, self.dtype)(pooled)


# big_vision's and CLIPA's text pools over the unmasked output, as reclip_eval.models.text.UNMASKED_POOLS.
UNMASKED_POOLS = {
    "last": lambda x: x[:, -1],
    "first": lambda x: x[:, 0],
    "mean_all": lambda x: x.mean(axis=1),
    "mean_after_first": lambda x: x[:, 1:].mean(axis=1),
    "max_all": lambda x: x.max(axis=1),
}


class TextTower(nn.Module):
    """Token + position embedding, blocks (causal for end-of-text pooling), pooled, projection."""

    config: TextConfig
    embed_dim: int
    dtype: Any = None

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        """tokens (B, L) CLIP BPE ids, 0-padded, L <= context_length -> features (B, embed_dim)."""
        c = self.config
        length = tokens.shape[1]
        if length > c.context_length:
            raise ValueError(f"text tower has {c.context_length} positions, got {length} tokens; tokenize with "
                             f"context_length <= {c.context_length}")
        x = nn.Embed(c.vocab_size, c.width, embedding_init=_normal(0.02), dtype=self.dtype, name="Embed_0")(tokens)
        x = x + self.param("pos_embedding", _normal(0.01), (1, c.context_length, c.width))[:, :length]
        encoder = Encoder(c.layers, c.heads, c.mlp_ratio, c.activation, c.layer_norm_eps, dtype=self.dtype,
                          name="Encoder_0")
        if c.pool == "eot":
            x = encoder(x, nn.make_causal_mask(tokens))
            # The end-of-text id (49407) is the largest id in the vocabulary, as in CLIP.
            pooled = x[jnp.arange(x.shape[0]), tokens.argmax(axis=-1)]
        elif c.pool in UNMASKED_POOLS:  # no mask at all, as big_vision / CLIPA
            pooled = UNMASKED_POOLS[c.pool](encoder(x))
        elif c.pool == "map":
            pooled = MAPHead(c.heads, c.mlp_ratio, c.activation, c.layer_norm_eps, self.dtype, name="MAPHead_0")(
                encoder(x))
        else:
            valid = tokens != 0
            x = encoder(x, valid[:, None, None, :])  # padding masked as keys only, as torch's key_padding_mask
            keep = valid[..., None].astype(x.dtype)
            pooled = (x * keep).sum(axis=1) / jnp.maximum(keep.sum(axis=1), 1)
        return _head(self.embed_dim, c.width, c.head_bias, self.dtype)(pooled)


class CLIP(nn.Module):
    """Image tower `img`, text tower `txt`, log temperature `t` (shape (1,), as big_vision stores it)."""

    config: CLIPConfig
    dtype: Any = None  # computation dtype (None: the parameters', float32); bfloat16 for bf16 evaluation

    def setup(self) -> None:
        self.img = VisionTower(self.config.vision, self.config.embed_dim, self.dtype)
        self.txt = TextTower(self.config.text, self.config.embed_dim, self.dtype)
        self.t = self.param("t", nn.initializers.constant(self.config.init_logit_scale), (1,))

    def encode_image(self, pixels: jax.Array, normalize: bool = True, image_tokens: ImageTokens | None = None
                     ) -> jax.Array:
        features = self.img(pixels, image_tokens)
        return _l2_normalize(features) if normalize else features

    def encode_text(self, tokens: jax.Array, normalize: bool = True) -> jax.Array:
        features = self.txt(tokens)
        return _l2_normalize(features) if normalize else features

    def temperature_scale(self) -> jax.Array:
        """exp(t) = 1/tau, clamped at max_logit_scale as the torch model does (big_vision does not clamp)."""
        return jnp.exp(jnp.minimum(self.t[0], math.log(self.config.max_logit_scale)))

    def __call__(self, pixels: jax.Array, tokens: jax.Array, image_tokens: ImageTokens | None = None
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """-> (normalised image embeddings, normalised text embeddings, 1/tau); `image_tokens`: see VisionTower."""
        return (self.encode_image(pixels, image_tokens=image_tokens), self.encode_text(tokens),
                self.temperature_scale())


def select_image_tokens(x: jax.Array, spec: ImageTokens, grid_hw: tuple[int, int], key: jax.Array) -> jax.Array:
    """(B, N, D) -> (B, K, D): the torch `select_image_tokens` with jax's random draws and the same index arithmetic
    (random: the K smallest of N uniform draws; grid: one place per cell; block: one top-left corner)."""
    batch, tokens, _ = x.shape
    kept = spec.kept(grid_hw)
    if spec.kind == "random":
        index = jnp.argsort(jax.random.uniform(key, (batch, tokens)), axis=1)[:, :kept]
    elif spec.kind == "grid":
        w = spec.window
        place = jax.random.randint(key, (batch, kept), 0, w * w)
        index = jnp.asarray(grid_window_bases(grid_hw, w)) + (place // w) * grid_hw[1] + place % w
    else:
        shape = block_shape(kept, grid_hw)
        top_key, left_key = jax.random.split(key)
        top = jax.random.randint(top_key, (batch, 1), 0, grid_hw[0] - shape[0] + 1)
        left = jax.random.randint(left_key, (batch, 1), 0, grid_hw[1] - shape[1] + 1)
        index = top * grid_hw[1] + left + jnp.asarray(block_offsets(shape, grid_hw[1]))
    return jnp.take_along_axis(x, index[..., None], axis=1)


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """x / max(||x||, eps), as torch.nn.functional.normalize."""
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def init_params(config: CLIPConfig, seed: int = 0) -> dict[str, Any]:
    """Fresh parameters for `config` (the `params` collection), from `seed`."""
    height, width = config.vision.image_hw
    pixels = jnp.zeros((1, height, width, 3), jnp.float32)
    tokens = jnp.zeros((1, config.text.context_length), jnp.int32)
    return CLIP(config).init(jax.random.key(seed), pixels, tokens)["params"]
