"""Architecture config of the dual encoder. Serialised as the checkpoint's `config.json` (see reclip_eval.checkpoint)."""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# OpenAI CLIP normalisation; the paper does not state its own, and every CLIP peer uses these.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


# An input size: one int for a square image (what every stored config.json has so far), or [height, width].
ImageSize = int | tuple[int, int]


@functools.cache
def _choices(cls: type) -> dict[str, tuple[Any, ...]]:
    hints = typing.get_type_hints(cls)
    return {f.name: typing.get_args(hints[f.name]) for f in dataclasses.fields(cls)
            if typing.get_origin(hints[f.name]) is Literal}


def check_choices(config: Any, what: str) -> None:
    """A field typed Literal[...] holds one of its values, also when the dataclass is built directly (from_dict
    checks a YAML's values; this catches a caller's, before a lookup deep in the model fails on it)."""
    for name, allowed in _choices(type(config)).items():
        value = getattr(config, name)
        if value not in allowed:
            raise ValueError(f"{what} {name} {value!r} must be one of {', '.join(map(str, allowed))}")


def image_hw(size: ImageSize) -> tuple[int, int]:
    """(height, width) of an image size given as an int (square) or a pair."""
    return (size, size) if isinstance(size, int) else (size[0], size[1])


@dataclass(frozen=True)
class VisionConfig:
    # A square size stays an int (so square config.json files and results read as before); [h, h] becomes h.
    image_size: ImageSize = 224
    patch_size: int = 16
    width: int = 1024
    layers: int = 24
    heads: int = 16
    mlp_ratio: float = 4.0
    # "gap": global average pooling of the patch tokens (the paper's default, as in big_vision/FLIP); a class token,
    # when there is one (`class_token`), is left out of the average (CLIPA, open_clip's pool_type "avg").
    # "cls": the output at a prepended class token (OpenAI CLIP, open_clip; big_vision's pool_type "tok").
    # "first": the output at the first position, whatever token it is (big_vision's pool_type "0": without a class
    # token, the top-left patch; CLIPA's "0": its class token).
    # "map": multi-head attention pooling, a learned probe attending to every output token (big_vision's MAPHead,
    # SigLIP; models/map_head.py), with the tower's heads and MLP width.
    pool: Literal["gap", "cls", "first", "map"] = "gap"
    ln_pre: bool = False  # LayerNorm after patch+position embedding (OpenAI CLIP has it, big_vision ViT does not)
    # The options below describe foreign architectures (imported checkpoints run on both backends); the defaults
    # are this project's own model, so a config.json written before they existed reads as it did.
    # A class token even when pooling is "gap" (CLIPA always prepends one); "cls" pooling always has one.
    class_token: bool = False
    # Whether the position table has a row for the class token (OpenAI CLIP, CLIPA: the class token gets a learned
    # position) or not (big_vision: the position embedding is added to the patches before the class token joins).
    class_token_position: bool = True
    # The final LayerNorm after pooling (CLIPA, open_clip's final_ln_after_pool) instead of over every token.
    norm_after_pool: bool = False
    # No final LayerNorm at all (CLIPA's pool_type "0" and "map" pool the blocks' raw output).
    final_norm: bool = True
    patch_bias: bool = True  # a bias in the patch-embedding convolution (big_vision, OpenAI: none in CLIPA, open_clip)
    head_bias: bool = False  # a bias in the projection to the embedding space (big_vision's image `head`)
    # "learned" (stored in the checkpoint) or "sincos2d": fixed 2-D sin-cos embeddings (MoCo v3 / big_vision's
    # posemb_sincos_2d, CLIPA's H models), computed from the grid and never stored; see models/pos_embed.py.
    pos_embed: Literal["learned", "sincos2d"] = "learned"
    activation: Literal["gelu", "gelu_tanh"] = "gelu"  # exact erf GELU (torch) or the tanh form (flax's default)
    layer_norm_eps: float = 1e-5  # torch's default; big_vision and CLIPA use flax's 1e-6

    def __post_init__(self) -> None:
        check_choices(self, "vision")
        size = self.image_size
        if not isinstance(size, int) and len(size) == 2 and all(isinstance(s, int) for s in size):
            object.__setattr__(self, "image_size", size[0] if size[0] == size[1] else (size[0], size[1]))
        elif isinstance(size, bool) or not isinstance(size, int):
            raise ValueError(f"image_size {size!r} must be an integer or a [height, width] pair of integers")
        for side, value in zip(("height", "width"), self.image_hw, strict=True):
            shown = f"image_size {self.image_size}" if isinstance(self.image_size, int) else \
                f"image_size {list(self.image_size)}: {side} {value}"
            if value <= 0:
                raise ValueError(f"{shown} must be positive")
            if value % self.patch_size:
                raise ValueError(f"{shown} is not a multiple of patch_size {self.patch_size}")
        if self.width % self.heads:
            raise ValueError(f"vision width {self.width} is not divisible by heads {self.heads}")
        if not self.final_norm and self.norm_after_pool:
            raise ValueError("vision final_norm false (no final LayerNorm) contradicts norm_after_pool true")
        if self.pos_embed == "sincos2d" and (self.width % 4 or self.width < 8):
            raise ValueError(f"pos_embed sincos2d needs a vision width that is a multiple of 4 and at least 8, "
                             f"got {self.width}")

    @property
    def image_hw(self) -> tuple[int, int]:
        return image_hw(self.image_size)

    @property
    def grid_hw(self) -> tuple[int, int]:
        """(rows, columns) of the patch grid."""
        height, width = self.image_hw
        return height // self.patch_size, width // self.patch_size

    @property
    def grid_size(self) -> int:
        """The side of a square patch grid, for callers that only handle square inputs (grid_hw otherwise)."""
        rows, columns = self.grid_hw
        if rows != columns:
            raise ValueError(f"image_size {list(self.image_size)} is not square; this caller needs a square "
                             "image (use grid_hw for a non-square grid)")
        return rows

    @property
    def num_patches(self) -> int:
        rows, columns = self.grid_hw
        return rows * columns

    @property
    def has_class_token(self) -> bool:
        return self.pool == "cls" or self.class_token

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches in the sequence (the class token)."""
        return 1 if self.has_class_token else 0

    @property
    def pos_embed_prefix(self) -> int:
        """Rows of the position table before the grid (the class token's position, when it has one)."""
        return 1 if self.has_class_token and self.class_token_position else 0


@dataclass(frozen=True)
class TextConfig:
    # Length of the learned position table, and the tokenisation length used at evaluation. A training stage may
    # use fewer tokens (the paper's text length 16) and then only the first positions are used.
    context_length: int = 77
    vocab_size: int = 49408
    width: int = 1024
    # The paper says "12 heads and width 1024", which does not divide; 16 heads of 64 has the same FLOPs.
    layers: int = 12
    heads: int = 16
    mlp_ratio: float = 4.0
    # "eot": causal transformer, features at the end-of-text token (Radford et al. 2021, which the paper follows).
    # "mean": bidirectional transformer, mean over non-padding tokens.
    # "last": bidirectional transformer without any mask (padding attends and is attended), features at the last
    # position (big_vision's and CLIPA's text towers, open_clip's pool_type "last" with no_causal_mask).
    # "first": unmasked as "last", features at the first position (big_vision's "first", CLIPA's "tok").
    # "mean_all": unmasked as "last", the mean over every position, padding included (big_vision's "mean"/"gap";
    # not our "mean", which masks the padding and leaves it out of the mean); "mean_after_first": the same without the
    # first position (CLIPA's "gap"); "max_all": the maximum over every position (big_vision's "max" / "gmp");
    # "map": a MAP head over every position (big_vision's text "map", models/map_head.py).
    pool: Literal["eot", "mean", "last", "first", "mean_all", "mean_after_first", "max_all", "map"] = "eot"
    tokenizer: Literal["clip-bpe"] = "clip-bpe"
    head_bias: bool = False  # a bias in the projection to the embedding space (big_vision's text `head`)
    activation: Literal["gelu", "gelu_tanh"] = "gelu"
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        check_choices(self, "text")
        if self.width % self.heads:
            raise ValueError(f"text width {self.width} is not divisible by heads {self.heads}")
        if self.context_length < 2:
            raise ValueError(f"context_length must be >= 2 (start and end token), got {self.context_length}")


@dataclass(frozen=True)
class PreprocessConfig:
    """Evaluation-time image preprocessing: resize the shorter side, centre crop, normalise."""

    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    resize: Literal["shortest", "squash"] = "shortest"

    def __post_init__(self) -> None:
        check_choices(self, "preprocess")


@dataclass(frozen=True)
class PosEmbedResampleConfig:
    """How the position-embedding grid is resampled when the image size changes (see models/pos_embed.py).

    Default: bilinear with aligned corners, which is what big_vision's `resample_posemb` (scipy zoom, order 1)
    does: corner embeddings are kept and a linear ramp stays exactly linear.
    """

    mode: Literal["bilinear", "bicubic", "nearest"] = "bilinear"  # nearest: each new cell copies one old row
    align_corners: bool = True
    antialias: bool = False

    def __post_init__(self) -> None:
        check_choices(self, "pos_embed_resample")

    @classmethod
    def named(cls, name: str) -> PosEmbedResampleConfig:
        """One of RESAMPLE_MODES by name."""
        if name not in RESAMPLE_MODES:
            raise ValueError(f"unknown position-embedding resample mode {name!r}; known: {', '.join(RESAMPLE_MODES)}")
        return RESAMPLE_MODES[name]

    @property
    def name(self) -> str | None:
        """The named mode these settings are, None for another combination."""
        return next((name for name, mode in RESAMPLE_MODES.items() if mode == self), None)


# How the peers resample, as named settings of the one resampler (models/pos_embed.py). big_vision's
# `resample_posemb`: scipy.ndimage.zoom order 1, i.e. bilinear through the corner samples, no antialias (CLIPA
# the same); open_clip's big_vision converter (open_clip/convert.py): timm's resample_abs_pos_embed, bilinear,
# align_corners False, antialias False; open_clip's own resize_pos_embed: bicubic, align_corners False, antialias.
RESAMPLE_MODES: dict[str, PosEmbedResampleConfig] = {
    "big_vision": PosEmbedResampleConfig("bilinear", align_corners=True, antialias=False),
    "timm_bilinear": PosEmbedResampleConfig("bilinear", align_corners=False, antialias=False),
    "open_clip": PosEmbedResampleConfig("bicubic", align_corners=False, antialias=True),
}


@dataclass(frozen=True)
class CLIPConfig:
    embed_dim: int = 1024
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    pos_embed_resample: PosEmbedResampleConfig = field(default_factory=PosEmbedResampleConfig)
    init_logit_scale: float = math.log(1 / 0.07)
    max_logit_scale: float = 100.0  # the learnable temperature is clamped at 1/100 as in CLIP


def text_side(config: CLIPConfig) -> dict[str, Any]:
    """The parts of `config` that a text embedding depends on (text tower, tokenizer, context length, projection
    width); the image tower does not matter. Caches of class embeddings are keyed on it."""
    return {"text": asdict(config.text), "embed_dim": config.embed_dim}
