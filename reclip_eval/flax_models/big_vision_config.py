"""big_vision's `model` config of a two-tower checkpoint (`--model-config FILE`, `reclip_eval.load(...,
model_config=)`), read with big_vision's own key names, for what a `.npz` tree cannot say.

The file is the `config.model` of the training run, as JSON or YAML (read with `yaml.safe_load`; JSON is YAML):

    {"image": {"variant": "B/16", "pool_type": "map", "posemb": "learn"},
     "text": {"variant": "B", "pool_type": "last", "vocab_size": 32000},
     "out_dim": 768, "bias_init": -10.0, "temperature_init": 10.0}

or a whole run config holding it under `model` (its other keys, input pipeline, optimizer, ..., are not read; its
`model_name`, when present, must be a two-tower model).

The keys are those of big_vision's models/proj/image_text/two_towers.py `Model`, models/vit.py `_Model` and
models/proj/image_text/text_transformer.py `_Model`, plus those CLIPA's forks of them add (clipa_jax/models). A key
neither codebase has is refused naming it (with the closest valid name); so is a value the import cannot represent.
A key the config leaves out has the value big_vision's code gives it (image pool_type "gap", posemb "learn", text
pool_type "last"), exactly as big_vision would build the model from the same config. Keys that only matter for
training (dropout, scan, remat_policy, head_zeroinit, temperature_init, ...) are accepted and do not change the
forward pass.

Sizes (`variant`, `width`, `depth`, `mlp_dim`, `num_heads`, `patch_size`, `vocab_size`, `out_dim`) are checked
against the weights by big_vision_npz.py, with `variant` decoded by the codebase's own table (CLIPA's text tower has
another one) and explicit keys overriding it, as big_vision's `Model(variant=..., **kw)` does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reclip_eval.errors import ConfigError
from reclip_eval.names import near_matches

TWO_TOWERS = ("proj.image_text.two_towers", "two_towers")  # a run config's model_name: big_vision's, CLIPA's
TOP_KEYS = ("image", "text", "image_model", "text_model", "out_dim", "temperature_init", "bias_init")
# big_vision vit._Model's fields, CLIPA's additions (drop_path, patch_embeding: sic), and the factory's `variant`.
IMAGE_KEYS = ("variant", "patch_size", "width", "depth", "mlp_dim", "num_heads", "posemb", "rep_size", "dropout",
              "pool_type", "head_zeroinit", "scan", "remat_policy", "dtype_mm", "drop_path", "patch_embeding")
TEXT_KEYS = ("variant", "width", "depth", "mlp_dim", "num_heads", "dropout", "vocab_size", "pool_type", "scan",
             "remat_policy", "posemb", "head_zeroinit", "drop_path")
SIZE_KEYS = ("width", "depth", "mlp_dim", "num_heads")
# The values each codebase's code accepts for these keys, and whether the import represents them (None: it does;
# otherwise why not).
IMAGE_POOLS = {"gap": None, "tok": None, "map": None, "0": None,
               "none": "returns the token map, not one embedding per image"}
TEXT_POOLS = {"last": None, "first": None, "mean": None, "gap": None, "tok": None,
              "max": None, "gmp": None, "map": None}
IMAGE_POSEMBS = {"learn": None, "sincos2d": None}
TEXT_POSEMBS = {"learn": None, "sincos1d": "CLIPA's fixed 1-D sin-cos text positions are not implemented here"}
IMAGE_MODELS = ("vit",)
TEXT_MODELS = ("proj.image_text.text_transformer", "text_transformer")  # big_vision's name, CLIPA's
# big_vision's defaults for what a config leaves out (vit._Model, text_transformer._Model; CLIPA's are the same).
DEFAULTS = {"image.pool_type": "gap", "image.posemb": "learn", "text.pool_type": "last", "text.posemb": "learn"}

# vit.decode_variant (big_vision; CLIPA's image tower has the same values, fewer names) and CLIPA's text tower's
# own decode_variant: (width, depth, mlp_dim, num_heads).
_BIG_VISION_VARIANTS = {
    "mu": (32, 1, 128, 2), "Ti": (192, 12, 768, 3), "S": (384, 12, 1536, 6), "M": (512, 12, 2048, 8),
    "B": (768, 12, 3072, 12), "L": (1024, 24, 4096, 16), "So400m": (1152, 27, 4304, 16), "H": (1280, 32, 5120, 16),
    "g": (1408, 40, 6144, 16), "g-opt": (1536, 40, 6144, 16), "G": (1664, 48, 8192, 16), "G-opt": (1536, 48, 8192, 16),
    "e": (1792, 56, 15360, 16)}
_CLIPA_TEXT_VARIANTS = {
    "Ti": (192, 12, 768, 3), "S": (384, 12, 1536, 6), "M": (512, 12, 2048, 8), "B": (512, 12, 2048, 8),
    "L": (768, 12, 3072, 12), "H": (1024, 24, 4096, 16), "g": (1408, 40, 6144, 16), "G": (1664, 48, 8192, 16),
    "e": (1792, 56, 15360, 16)}


class ModelConfigError(ConfigError):
    """A `--model-config` file that is not a big_vision model config the import can use: one line naming the key."""

    def __init__(self, source: str, problem: str):
        self.source, self.problems = source, [problem]
        Exception.__init__(self, f"{source}: {problem}")


@dataclass(frozen=True)
class ModelConfig:
    """A checked big_vision model config: `values` maps dotted keys ("image.pool_type") to what the file states."""

    source: str
    values: dict[str, Any]

    def stated(self, key: str) -> Any:
        """The value the file gives `key`, or big_vision's default for it (None where there is none)."""
        return self.values.get(key, DEFAULTS.get(key))

    def sizes(self, tower: str, layout: str) -> dict[str, tuple[int, str]]:
        """The sizes the config implies for `tower` ("image" or "text"): {size key: (value, the key stating it)},
        `variant` decoded by the codebase's table and explicit keys overriding it."""
        out: dict[str, tuple[int, str]] = {}
        variant = self.values.get(f"{tower}.variant")
        if variant is not None:
            name, _, patch = variant.partition("/")
            table = _CLIPA_TEXT_VARIANTS if (layout, tower) == ("clipa", "text") else _BIG_VISION_VARIANTS
            if name not in table:
                raise ModelConfigError(self.source, f"{tower}.variant {variant!r}: unknown size {name!r} (known: "
                                       f"{', '.join(table)})")
            shown = f"{tower}.variant {variant!r}"
            out = {key: (value, shown) for key, value in zip(SIZE_KEYS, table[name], strict=True)}
            if patch and tower == "image":
                out["patch_size"] = (_int(patch, f"{tower}.variant", self.source), shown)
        for key in (*SIZE_KEYS, "patch_size", "vocab_size"):
            if f"{tower}.{key}" in self.values:
                out[key] = (self.values[f"{tower}.{key}"], f"{tower}.{key}")
        return out


def read_model_config(given: str | Path | Mapping[str, Any]) -> ModelConfig:
    """The config a path (JSON or YAML) or a mapping gives, checked key by key; one ModelConfigError line for the first
    problem."""
    if isinstance(given, Mapping):
        return _check(dict(given), "model_config")
    path = Path(given).expanduser()
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelConfigError(source, "no such file (expected big_vision's model config as JSON or YAML)") from None
    except IsADirectoryError:
        raise ModelConfigError(source, "a folder; expected the model config file itself") from None
    except UnicodeDecodeError as e:
        raise ModelConfigError(source, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ModelConfigError(source, f"not valid {kind} ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise ModelConfigError(source, f"expected a mapping (big_vision's config.model), got {type(data).__name__}")
    return _check(data, source)


def _check(data: dict[str, Any], source: str) -> ModelConfig:
    if isinstance(data.get("model"), dict) and not {"image", "text"} & set(data):
        # A whole run config (big_vision's `get_config()` as data): its `model` entry is the model's config.
        name = data.get("model_name", TWO_TOWERS[0])
        if name not in TWO_TOWERS:
            raise ModelConfigError(source, f"model_name {name!r}: only two-tower models "
                                           f"({' or '.join(map(repr, TWO_TOWERS))}) are imported")
        data = data["model"]
    values: dict[str, Any] = {}
    _known(data, TOP_KEYS, "", source)
    for tower, keys in (("image", IMAGE_KEYS), ("text", TEXT_KEYS)):
        part = data.get(tower) or {}
        if not isinstance(part, dict):
            raise ModelConfigError(source, f"{tower}: expected a mapping of the tower's options, got {part!r}")
        _known(part, keys, f"{tower}.", source)
        values |= {f"{tower}.{key}": value for key, value in part.items()}
    values |= {key: data[key] for key in TOP_KEYS if key in data and key not in ("image", "text")}
    _check_values(values, source)
    return ModelConfig(source, values)


def _known(part: dict[str, Any], keys: tuple[str, ...], prefix: str, source: str) -> None:
    for key in part:
        if key not in keys:
            near = near_matches(str(key), list(keys), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else f" (known: {', '.join(keys)})"
            raise ModelConfigError(source, f"{prefix}{key}: not a key of big_vision's {prefix[:-1] or 'model'} "
                                           f"config{hint}")


def _check_values(values: dict[str, Any], source: str) -> None:
    for key, choices in (("image.pool_type", IMAGE_POOLS), ("text.pool_type", TEXT_POOLS),
                         ("image.posemb", IMAGE_POSEMBS), ("text.posemb", TEXT_POSEMBS)):
        if key in values:
            value = values[key]
            if value not in choices:
                raise ModelConfigError(source, f"{key} {value!r}: expected one of "
                                               f"{', '.join(repr(c) for c in choices if choices[c] is None)}")
            if choices[value] is not None:
                raise ModelConfigError(source, f"{key} {value!r}: {choices[value]}")
    for key, known in (("image_model", IMAGE_MODELS), ("text_model", TEXT_MODELS)):
        if key in values and values[key] not in known:
            raise ModelConfigError(source, f"{key} {values[key]!r}: only {' or '.join(map(repr, known))} two-tower "
                                           "trees are imported")
    if values.get("image.rep_size"):
        raise ModelConfigError(source, f"image.rep_size {values['image.rep_size']!r}: a pre-logits layer is not "
                                       "part of this model (only rep_size false/0 is imported)")
    if values.get("image.patch_embeding", "conv") != "conv":
        raise ModelConfigError(source, f"image.patch_embeding {values['image.patch_embeding']!r}: only 'conv' is "
                                       "imported")
    for key in [f"{t}.{k}" for t in ("image", "text") for k in (*SIZE_KEYS, "vocab_size")] + ["image.patch_size"]:
        if key in values and key != "image.patch_size":
            _int(values[key], key, source)
    if "image.patch_size" in values:
        patch = values["image.patch_size"]
        sides = patch if isinstance(patch, (list, tuple)) else [patch]
        if len(sides) not in (1, 2) or len({_int(s, "image.patch_size", source) for s in sides}) != 1:
            raise ModelConfigError(source, f"image.patch_size {patch!r}: expected one side or two equal sides")
        values["image.patch_size"] = int(sides[0])
    for key in ("image.variant", "text.variant"):
        if key in values and not isinstance(values[key], str):
            raise ModelConfigError(source, f"{key} {values[key]!r}: expected a name like 'B/16'")
    if "out_dim" in values:
        values["out_dim"] = _out_dims(values["out_dim"], source)
    if values.get("bias_init") is not None and not _number(values["bias_init"]):
        raise ModelConfigError(source, f"bias_init {values['bias_init']!r}: expected a number or null")


def _out_dims(value: Any, source: str) -> tuple[int, int]:
    """out_dim as (image, text): one int for both, or a pair; an image tower without a head (None) is refused."""
    dims = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(dims) != 2:
        raise ModelConfigError(source, f"out_dim {value!r}: expected one width or an (image, text) pair")
    if dims[0] is None or dims[1] is None:
        tower = "image" if dims[0] is None else "text"
        raise ModelConfigError(source, f"out_dim {value!r}: a {tower} tower without a head (null) is not imported; "
                                       "this model projects both towers to one embedding space")
    return _int(dims[0], "out_dim", source), _int(dims[1], "out_dim", source)


def _int(value: Any, key: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit() or int(value) <= 0:
        raise ModelConfigError(source, f"{key} {value!r}: expected a positive integer")
    return int(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
