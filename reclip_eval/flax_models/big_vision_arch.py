"""What a big_vision / CLIPA tree's weights say about its pooling, what its model config states, and the options of
this project's model that compute the same function; where neither tells, the import is refused naming the key.

Image towers (big_vision models/vit.py, CLIPA clipa_jax/models/vit.py), after the blocks:

    pool_type   big_vision                              CLIPA (a class token always, in the position table)
    "gap"       LayerNorm, mean of the tokens           mean of the patch tokens, then LayerNorm (img/encoder_norm)
    "tok"       LayerNorm, the class token (img/cls)    LayerNorm, the class token
    "0"         LayerNorm, the first token (a patch)    the class token, no LayerNorm at all
    "map"       LayerNorm, MAP head (img/MAPHead_0)     MAP head over every token, no LayerNorm at all

So a big_vision tree tells "tok" (img/cls) and "map" (img/MAPHead_0) apart from "gap" / "0", which only a config can
separate; a CLIPA tree tells "map" and "0" (no encoder_norm) from "gap" / "tok" (which differ only in the forward).
Text towers store their pooling only as a MAP head (big_vision's text "map", txt/MAPHead_0); big_vision's "last" /
"first" / "mean" (every position, padding included) / "max" and CLIPA's "last" / "tok" (the first position) / "gap"
(every position but the first) come from the config, or big_vision's default "last" when a config is given that
leaves it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reclip_eval.flax_models.big_vision_config import ModelConfig, ModelConfigError
from reclip_eval.models.config import CLIPConfig

# (our VisionConfig options) for each (layout, pool_type).
_IMAGE = {
    ("big_vision", "gap"): {"pool": "gap"},
    ("big_vision", "tok"): {"pool": "cls"},  # no position row for the class token (the tree tells)
    ("big_vision", "0"): {"pool": "first"},
    ("big_vision", "map"): {"pool": "map"},
    ("clipa", "gap"): {"pool": "gap", "class_token": True, "norm_after_pool": True},
    ("clipa", "tok"): {"pool": "cls", "class_token": True, "norm_after_pool": True},
    ("clipa", "0"): {"pool": "first", "class_token": True, "final_norm": False},
    ("clipa", "map"): {"pool": "map", "class_token": True, "final_norm": False},
}
# our TextConfig pool for each (layout, pool_type); a pair missing is not that codebase's value.
_TEXT = {("big_vision", "last"): "last", ("big_vision", "first"): "first", ("big_vision", "mean"): "mean_all",
         ("big_vision", "gap"): "mean_all", ("clipa", "last"): "last", ("clipa", "tok"): "first",
         ("clipa", "gap"): "mean_after_first", ("big_vision", "max"): "max_all", ("big_vision", "gmp"): "max_all",
         ("big_vision", "map"): "map"}
# As messages list them (big_vision's "gap" and "gmp" are other names of "mean" and "max").
_TEXT_NAMES = {"big_vision": ("last", "first", "mean", "max", "map"), "clipa": ("last", "tok", "gap")}


@dataclass(frozen=True)
class Architecture:
    """The big_vision options the import uses (`image_pool`, `text_pool`: big_vision's names) and our model's."""

    image_pool: str
    text_pool: str
    vision: dict[str, Any]  # VisionConfig options
    text: str  # TextConfig.pool

    def describe(self, posemb: str, config: ModelConfig | None, logit_bias: float | None) -> dict[str, Any]:
        """What the results record: the values used and where the config came from."""
        return {"image": {"pool_type": self.image_pool, "posemb": posemb}, "text": {"pool_type": self.text_pool},
                "logit_bias": logit_bias, "model_config": config.source if config is not None else None}


def weights_image_pools(flat: Mapping[str, Any], layout: str) -> tuple[str, ...]:
    """The image pool_types the weights fit (our names of the tree's keys: img/MAPHead_0, img/cls, encoder norms)."""
    has_map = any(k.startswith("img/MAPHead_0/") for k in flat)
    if layout == "clipa":
        if has_map:
            return ("map",)
        return ("gap", "tok") if any(k.startswith("img/encoder_norm/") for k in flat) else ("0",)
    if has_map:
        return ("map",)
    return ("tok",) if "img/cls" in flat else ("gap", "0")


def resolve(flat: Mapping[str, Any], layout: str, config: ModelConfig | None, source: str
            ) -> tuple[Architecture, list[str]]:
    """The architecture, and what could not be decided (one phrase per config key, empty when all is known). An
    undecided key gets a placeholder, so the rest of the tree can still be checked before the refusal."""
    unresolved = []
    fits = weights_image_pools(flat, layout)
    if config is not None:
        image_pool = config.stated("image.pool_type")
        if image_pool not in fits:
            default = "" if "image.pool_type" in config.values else " (big_vision's default: the config leaves it out)"
            raise ModelConfigError(config.source, f"image.pool_type {image_pool!r}{default} does not fit {source}: "
                                                  f"its {_layout_name(layout)} weights fit {_either(fits)}")
    elif len(fits) == 1:
        image_pool = fits[0]
    else:
        image_pool = fits[0]
        why = "always stores img/cls" if layout == "clipa" else "without img/cls or img/MAPHead_0"
        unresolved.append(f"image.pool_type (a {_layout_name(layout)} tree {why}: {_either(fits)} both fit)")
    text_map = any(k.startswith("txt/MAPHead_0/") for k in flat)
    if config is None and text_map:
        text_pool = "map"  # the text tower's own MAP head: the one pooling that stores weights
    elif config is None:
        text_pool = "last"
        unresolved.append("text.pool_type (the weights never say how the text tower pools: "
                          f"{_either(_TEXT_NAMES[layout])})")
    else:
        text_pool = config.stated("text.pool_type")
        if (layout, text_pool) not in _TEXT:
            why = f"not a pool_type of {_layout_name(layout)}'s text tower (" \
                f"{_either(_TEXT_NAMES[layout])})"
            raise ModelConfigError(config.source, f"text.pool_type {text_pool!r}: {why}")
        if (text_pool == "map") != text_map:
            default = "" if "text.pool_type" in config.values else " (big_vision's default: the config leaves it out)"
            has = "has a text MAP head (txt/MAPHead_0)" if text_map else "has no text MAP head"
            raise ModelConfigError(config.source, f"text.pool_type {text_pool!r}{default} does not fit {source}: "
                                                  f"the tree {has}")
    return Architecture(image_pool, text_pool, _IMAGE[layout, image_pool], _TEXT[layout, text_pool]), unresolved


def check_stated(config: ModelConfig, clip: CLIPConfig, flat: Mapping[str, Any], layout: str, source: str, *,
                 logit_bias: float | None) -> None:
    """Every size the config states (directly or by `variant`), its out_dim, posemb and bias_init, fit the weights."""
    v, t = clip.vision, clip.text
    have = {"image": {"width": v.width, "depth": v.layers, "mlp_dim": int(v.width * v.mlp_ratio),
                      "num_heads": v.heads, "patch_size": v.patch_size},
            "text": {"width": t.width, "depth": t.layers, "mlp_dim": int(t.width * t.mlp_ratio), "num_heads": t.heads,
                     "vocab_size": t.vocab_size}}
    for tower, sizes in have.items():
        for key, (value, stated_by) in config.sizes(tower, layout).items():
            if key in sizes and sizes[key] != value:
                raise ModelConfigError(config.source, f"{stated_by} means {key} {value}, but {source} has "
                                                      f"{key} {sizes[key]}")
    if "out_dim" in config.values:
        dims = (flat["img/head/kernel"].shape[1], flat["txt/head/kernel"].shape[1])
        if tuple(config.values["out_dim"]) != dims:
            raise ModelConfigError(config.source, f"out_dim {list(config.values['out_dim'])} does not fit {source}: "
                                                  f"its heads project to {list(dims)}")
    posemb = config.values.get("image.posemb")
    if posemb is not None and (posemb == "learn") != (v.pos_embed == "learned"):
        stored = "stores img/pos_embedding" if v.pos_embed == "learned" else "stores no img/pos_embedding"
        raise ModelConfigError(config.source, f"image.posemb {posemb!r} does not fit {source}: the tree {stored}")
    if "bias_init" in config.values and (config.values["bias_init"] is None) != (logit_bias is None):
        raise ModelConfigError(config.source, f"bias_init {config.values['bias_init']!r} does not fit {source}: the "
                                              f"tree {'has no' if logit_bias is None else 'has a'} logit bias b")


def _layout_name(layout: str) -> str:
    return "CLIPA" if layout == "clipa" else "big_vision"


def _either(values: list[str] | tuple[str, ...]) -> str:
    shown = [repr(v) for v in values]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
