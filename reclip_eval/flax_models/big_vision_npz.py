"""Import of big_vision and CLIPA two-tower checkpoints saved as `.npz`, into this project's model (both backends).

The file: one array per parameter, the tree path joined with "/" (big_vision's `utils.save_checkpoint` /
`tree_flatten_with_names`), optionally under `params/` beside optimizer state (`opt/...`) and step counters
(`chrono/...`), which are ignored. bfloat16 arrays are stored with a void dtype of item size 2 (numpy has no
bfloat16) and read back as bfloat16 bits. Read with `allow_pickle=False`: nothing is unpickled.

The file is checked before any model is built, for both backends: a zip of `.npy` members only, every parameter
numeric and finite after the cast to float32 (NaN, inf, and float64 values beyond float32's range are refused), every
tensor of the rank the tree needs, and every shape the one the architecture read from the tree implies (a layer with
another head count or width is named). Each problem is one CheckpointError line naming the file and the key.

The two trees (big_vision models/proj/image_text/two_towers.py with vit.py and text_transformer.py; CLIPA's
clipa_jax/models, a fork of them):

    big_vision                                   CLIPA
    img/embedding/{kernel,bias}                  img/embedding/kernel            (no patch bias)
    img/pos_embedding (1, N, W)                  img/pos_embedding (1, 1 + N, W) (includes the class token's row;
                                                                                  absent for fixed sin-cos, H models)
    img/cls (only for pool_type "tok")           img/cls (always)
    img/Transformer/encoderblock_K/...           img/Transformer/encoderblock_K/...
    img/Transformer/encoder_norm                 img/encoder_norm                (after pooling)
    img/head/{kernel,bias}                       img/head/kernel
    txt/Embed_0/embedding, txt/pos_embedding     the same
    txt/Encoder_0/encoderblock_K/...             txt/Transformer/encoderblock_K/...
    txt/Encoder_0/encoder_norm                   txt/encoder_norm
    txt/head/{kernel,bias}                       txt/head/kernel
    t (1,): log temperature (not clamped)        t

    img/MAPHead_0/... (pool_type "map")          the same (no encoder_norm then)
    txt/MAPHead_0/... (text pool_type "map")     -
    b (1,): SigLIP's logit bias                  -

Scanned encoders (`scan=True`) hold one `encoderblock` with a leading depth axis; it is split into per-layer blocks.
Both trees use tanh GELU and flax's LayerNorm epsilon 1e-6; text towers have no mask. What the weights cannot tell
(the pooling: big_vision_arch.py) comes from big_vision's model config (big_vision_config.py) or is refused naming
the config key; the image size of fixed sin-cos positions is an argument. SigLIP's logit bias `b` is recorded, not
used: zero-shot ranking and retrieval do not change with it.

Training checkpoints written by big_vision since late 2023 are tensorstore (orbax) folders, with "~" standing for
"/" in names; they are not read here: the error says how to export an `.npz`.
"""

from __future__ import annotations

import math
import re
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reclip_eval.errors import CheckpointError
from reclip_eval.flax_models.big_vision_arch import Architecture, check_stated, resolve
from reclip_eval.flax_models.big_vision_config import ModelConfig, read_model_config
from reclip_eval.flax_models.convert import expected_flax_shapes, flax_to_torch, unflatten
from reclip_eval.models.config import CLIPConfig, PreprocessConfig, TextConfig, VisionConfig
from reclip_eval.models.finite import all_finite
from reclip_eval.registry import Registry

CLIP_BPE_VOCAB = 49408
IGNORED_PREFIXES = ("opt/", "chrono/")
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first local header, or an empty zip's end record
NPY_MAGIC = b"\x93NUMPY"
# What zipfile and numpy raise for a damaged archive or member: a bad header (numpy parses it as a Python literal,
# through `tokenize` for old headers), a CRC or length mismatch, a truncated stream, an impossible declared shape,
# an unsupported compression.
READ_ERRORS = (ValueError, OSError, EOFError, MemoryError, SyntaxError, tokenize.TokenError, zipfile.BadZipFile,
               zlib.error, struct.error, NotImplementedError)
# log(float32 max): a larger log temperature makes exp(t), which scales the logits, infinite.
MAX_LOG_SCALE = math.log(float(np.finfo(np.float32).max))
# Preprocessing of each codebase's evaluation: big_vision's value_range(-1, 1) after a squash resize; CLIPA's
# ImageNet statistics, bilinear squash (open_clip's pretrained config for the CLIPA weights, `_apcfg`).
BIG_VISION_PREPROCESS = PreprocessConfig(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear",
                                         resize="squash")
CLIPA_PREPROCESS = PreprocessConfig(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                                    interpolation="bilinear", resize="squash")


@dataclass(frozen=True)
class TreeLayout:
    """One codebase's tree: how to recognise it, where its parts sit relative to ours (reclip_eval.flax_models), and
    the architecture options its weights imply."""

    name: str
    recognise: Callable[[Mapping[str, np.ndarray]], bool]
    renames: tuple[tuple[str, str], ...]  # (their prefix, our prefix), the first that matches
    class_token_always: bool  # CLIPA prepends a class token whatever the pooling
    class_token_position: bool  # the position table has the class token's row
    preprocess: PreprocessConfig


TREE_LAYOUTS: Registry[TreeLayout] = Registry("checkpoint tree layout")


def _register(layout: TreeLayout) -> None:
    TREE_LAYOUTS.register(layout.name)(layout)


_register(TreeLayout(
    "big_vision", recognise=lambda flat: any(k.startswith("txt/Encoder_0/") for k in flat), renames=(),
    class_token_always=False, class_token_position=False,
    preprocess=BIG_VISION_PREPROCESS))
_register(TreeLayout(
    "clipa", recognise=lambda flat: any(k.startswith("txt/Transformer/") for k in flat),
    renames=(("txt/Transformer/", "txt/Encoder_0/"), ("txt/encoder_norm/", "txt/Encoder_0/encoder_norm/")),
    class_token_always=True, class_token_position=True,
    preprocess=CLIPA_PREPROCESS))


@dataclass(frozen=True)
class ImportedCheckpoint:
    config: CLIPConfig
    state: dict[str, np.ndarray]  # the torch model's state dict (float32 numpy arrays)
    layout: str
    architecture: dict[str, Any] = field(default_factory=dict)  # big_vision's options used (results record them)


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The parameters of a big_vision-style `.npz` by "/"-joined path, float32, `params/` stripped, optimizer state
    and counters dropped, scanned encoder blocks split per layer; each checked numeric and finite as it is read."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(_tensorstore_message(path) if _looks_like_tensorstore(path) else
                              f"{path}: a folder, not a .npz file (give the checkpoint file itself)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (expected a big_vision / CLIPA .npz checkpoint)")
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head.startswith(NPY_MAGIC):
        raise CheckpointError(f"{path}: a single .npy array, not a .npz archive of named parameters")
    if not head.startswith(ZIP_MAGICS):
        raise CheckpointError(f"{path}: not a .npz archive (a zip of .npy arrays); the file starts with {head!r}")
    flat: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            names = [info.filename for info in members]
            under_params = any(n.startswith("params/") for n in names)
            for info in members:
                name = info.filename.removesuffix(".npy")
                if name.startswith(IGNORED_PREFIXES) or (under_params and not name.startswith("params/")):
                    continue
                if not info.filename.endswith(".npy"):
                    raise CheckpointError(f"{path}: member {info.filename} is not a .npy array (a .npz holds "
                                          "one .npy file per parameter)")
                flat[name.removeprefix("params/")] = _as_float32(_read_member(archive, info, path),
                                                                 f"{path}: {name}")
    except READ_ERRORS as e:  # the archive itself (its directory or a member's stream) is damaged
        raise CheckpointError(f"{path}: not a readable .npz of plain arrays ({type(e).__name__}: {e}); the file "
                              "may be truncated or corrupt") from None
    if not flat:
        raise CheckpointError(f"{path}: no parameters in the archive (keys: {', '.join(names[:5]) or 'none'})")
    return _unscan(flat, path)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> np.ndarray:
    """One `.npy` member, never unpickled (an object array is refused by numpy with allow_pickle=False)."""
    try:
        with archive.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    except READ_ERRORS as e:
        raise CheckpointError(f"{path}: not a readable .npz of plain arrays ({info.filename}: {type(e).__name__}: "
                              f"{e})") from None


def _as_float32(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype.kind == "V" and array.dtype.itemsize == 2:  # bfloat16 as numpy stores it without ml_dtypes
        import ml_dtypes

        array = array.view(ml_dtypes.bfloat16)
    elif array.dtype.kind not in "fiu" or array.dtype.names is not None:
        raise CheckpointError(f"{what}: dtype {array.dtype} is not a numeric parameter")
    if 0 in array.shape:
        raise CheckpointError(f"{what}: empty (shape {array.shape}); a parameter holds values")
    with np.errstate(over="ignore"):  # an overflow is reported below, naming the tensor
        converted = array.astype(np.float32, copy=False)
    if not all_finite(converted):
        overflowed = array.dtype.kind == "f" and array.dtype.itemsize > 4 and all_finite(array)
        why = f"{array.dtype} values beyond float32's range" if overflowed else "NaN or inf values"
        raise CheckpointError(f"{what}: holds {why}; the weights are broken and would evaluate at chance")
    return converted


_SCANNED = re.compile(r"^(?P<encoder>.*)/encoderblock/(?P<rest>.+)$")


def _unscan(flat: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """`.../encoderblock/X` with a leading depth axis -> `.../encoderblock_K/X` (big_vision's scan=True layout)."""
    out: dict[str, np.ndarray] = {}
    for key, array in flat.items():
        match = _SCANNED.match(key)
        if match is None:
            out[key] = array
            continue
        if array.ndim == 0:
            raise CheckpointError(f"{path}: {key} is a scanned block's leaf (under encoderblock/) but has no "
                                  "leading layer axis (shape ())")
        for layer, block in enumerate(array):
            out[f"{match['encoder']}/encoderblock_{layer}/{match['rest']}"] = block
    depths = {m["encoder"]: len(flat[k]) for k in flat if (m := _SCANNED.match(k))}
    for key in flat:
        match = _SCANNED.match(key)
        if match and len(flat[key]) != depths[match["encoder"]]:
            raise CheckpointError(f"{path}: {key} has {len(flat[key])} scanned layers, other blocks of "
                                  f"{match['encoder']} have {depths[match['encoder']]}")
    return out


def _looks_like_tensorstore(folder: Path) -> bool:
    markers = ("_METADATA", "_CHECKPOINT_METADATA", "manifest.ocdbt", "_sharding", "checkpoint")
    return any((folder / m).exists() for m in markers) or any("~" in p.name for p in folder.iterdir())


def _tensorstore_message(folder: Path) -> str:
    return (f"{folder}: a tensorstore (orbax) checkpoint folder, as big_vision writes since late 2023; it is not "
            "read here. Export its parameters to a .npz first, e.g. in big_vision: "
            "`params = u.load_params(FOLDER); u.save_checkpoint({'params': params}, 'model.npz')` "
            "(big_vision.utils), then import model.npz")


def detect_layout(flat: Mapping[str, np.ndarray], source: str) -> TreeLayout:
    found = [layout for layout in TREE_LAYOUTS.values() if layout.recognise(flat)]
    if len(found) != 1:
        raise CheckpointError(f"{source}: not a big_vision or CLIPA two-tower tree (expected text blocks under "
                              f"txt/Encoder_0/ or txt/Transformer/; keys start {', '.join(sorted(flat)[:4])})")
    return found[0]


def import_two_towers(path: str | Path, *, layout: str | None = None, image_size: int | None = None,
                      model_config: str | Path | Mapping[str, Any] | ModelConfig | None = None,
                      any_vocabulary: bool = False) -> ImportedCheckpoint:
    """Read a big_vision / CLIPA `.npz` and return our config and torch state dict for it.

    `layout`: "big_vision" or "clipa", checked against the tree (None: recognised from it); `image_size`: needed only
    when the image positions are fixed sin-cos (not stored), otherwise the stored grid's size; `model_config`:
    big_vision's model config (a JSON/YAML path or a mapping: big_vision_config.py) for what the weights cannot tell.
    Without one, a tree whose pooling the weights do not decide is refused naming the config keys."""
    source = str(path)
    config = model_config if isinstance(model_config, ModelConfig) or model_config is None else \
        read_model_config(model_config)  # a bad config is refused before the weights are read
    flat = read_npz(path)
    tree = detect_layout(flat, source)
    if layout is not None and TREE_LAYOUTS.get(layout) is not tree:
        raise CheckpointError(f"{source}: layout {layout!r} asked for, but the tree is {tree.name}'s")
    if "img/pre_logits/kernel" in flat:
        raise CheckpointError(f"{source}: img/pre_logits/kernel is in the checkpoint: a pre-logits layer (rep_size) "
                              "is not part of this model")
    logit_bias = _logit_bias(flat, source)
    renamed, stored_names = _rename({k: v for k, v in flat.items() if k != "b"}, tree)
    arch, unresolved = resolve(renamed, tree.name, config, source)
    clip_config = _infer_config(renamed, tree, source, image_size=image_size, arch=arch)
    _check_tree_shapes(renamed, stored_names, clip_config, source)
    if unresolved:
        raise CheckpointError(f"{source}: the weights do not say {'; nor '.join(unresolved)}; give --model-config "
                              "FILE (Python: model_config=) with big_vision's model config stating "
                              f"{' and '.join('model.' + u.split(' ')[0] for u in unresolved)}")
    if config is not None:
        check_stated(config, clip_config, renamed, tree.name, source, logit_bias=logit_bias)
    if not any_vocabulary:  # True: the caller pairs the tree with its own tokenizer (zoo/big_vision.py checks it)
        _check_vocabulary(clip_config.text.vocab_size, source)
    state = flax_to_torch(unflatten(renamed), clip_config, source=source)
    posemb = "learn" if clip_config.vision.pos_embed == "learned" else "sincos2d"
    return ImportedCheckpoint(clip_config, state, tree.name, arch.describe(posemb, config, logit_bias))


def _logit_bias(flat: Mapping[str, np.ndarray], source: str) -> float | None:
    """SigLIP's `b` (shape (1,), as big_vision stores it), or None for a tree without one."""
    if "b" not in flat:
        return None
    if flat["b"].shape != (1,):
        raise CheckpointError(f"{source}: b (the logit bias) has shape {flat['b'].shape}; expected (1,)")
    return float(flat["b"][0])


def _check_vocabulary(vocab: int, source: str) -> None:
    if vocab != CLIP_BPE_VOCAB:
        raise CheckpointError(
            f"{source}: the text vocabulary has {vocab} entries, not CLIP's BPE ({CLIP_BPE_VOCAB}): give the "
            "tokenizer it was trained with, --tokenizer sentencepiece:PATH.model (big_vision: SigLIP, LiT) or "
            "--tokenizer bert:PATH/vocab.txt (CLIPA)")


def _rename(flat: Mapping[str, np.ndarray], tree: TreeLayout) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tree in our names, and each of our names' key in the file (for messages)."""
    out, stored_names = {}, {}
    for key, array in flat.items():
        ours = key
        for theirs, prefix in tree.renames:
            if key.startswith(theirs):
                ours = prefix + key[len(theirs):]
                break
        out[ours], stored_names[ours] = array, key
    return out, stored_names


def _check_tree_shapes(flat: Mapping[str, np.ndarray], stored_names: Mapping[str, str], config: CLIPConfig,
                       source: str) -> None:
    """Every tensor the architecture read from the tree has must have the shape it implies: the architecture is
    read from the first block of each tower, so another head count or width in a later one is caught here."""
    for path, shape in expected_flax_shapes(config).items():
        if path in flat and flat[path].shape != shape:
            raise CheckpointError(f"{source}: {stored_names[path]} has shape {flat[path].shape}, expected {shape} "
                                  "(the architecture the rest of the tree implies)")


def _need(flat: Mapping[str, np.ndarray], key: str, source: str, ndim: int) -> np.ndarray:
    """The tensor at `key`, which must exist and have `ndim` axes (its shape is unpacked into the architecture)."""
    if key not in flat:
        raise CheckpointError(f"{source}: {key} is missing (expected in a two-tower tree)")
    if flat[key].ndim != ndim:
        raise CheckpointError(f"{source}: {key} has shape {flat[key].shape}; expected {ndim} axes")
    return flat[key]


def _encoder_shape(flat: Mapping[str, np.ndarray], encoder: str, source: str) -> dict:
    """layers, heads and mlp_ratio of the encoder under `encoder` (our naming) from its kernels' shapes."""
    layers = len({m[1] for k in flat if (m := re.match(rf"^{re.escape(encoder)}/encoderblock_(\d+)/", k))})
    if layers == 0:
        raise CheckpointError(f"{source}: no encoder blocks under {encoder}/")
    block = f"{encoder}/encoderblock_0"
    width, heads, _ = _need(flat, f"{block}/MultiHeadDotProductAttention_0/query/kernel", source, 3).shape
    hidden = _need(flat, f"{block}/MlpBlock_0/Dense_0/kernel", source, 2).shape[1]
    return {"layers": layers, "heads": heads, "width": width, "mlp_ratio": hidden / width}


def _infer_config(flat: Mapping[str, np.ndarray], tree: TreeLayout, source: str, *, image_size: int | None,
                  arch: Architecture) -> CLIPConfig:
    patch, _, _, width = _need(flat, "img/embedding/kernel", source, 4).shape
    has_cls = "img/cls" in flat
    if tree.class_token_always and not has_cls:
        raise CheckpointError(f"{source}: img/cls is missing (a CLIPA image tower always has a class token)")
    learned = "img/pos_embedding" in flat
    prefix = 1 if has_cls and tree.class_token_position else 0
    if learned:
        tokens = _need(flat, "img/pos_embedding", source, 3).shape[1] - prefix
        side = math.isqrt(max(tokens, 0))
        if tokens < 1 or side * side != tokens:
            raise CheckpointError(f"{source}: img/pos_embedding has {tokens} grid tokens, not a square grid")
        image_size = side * patch  # the stored grid's; the loader resamples to another size on purpose
    elif image_size is None:
        raise CheckpointError(f"{source}: the image positions are fixed sin-cos (no img/pos_embedding stored), "
                              "so the image size is not in the file: give image_size (e.g. 224)")
    try:
        vision, text = _tower_configs(flat, tree, source, image_size=image_size, patch=patch, arch=arch,
                                      has_cls=has_cls, learned=learned)
    except ValueError as e:  # the configs' own checks (a width the heads do not divide, ...)
        raise CheckpointError(f"{source}: the tree's shapes give no valid architecture ({e})") from None
    if vision.width != width:
        raise CheckpointError(f"{source}: img/embedding has width {width}, the image blocks {vision.width}")
    embed_dim = _need(flat, "img/head/kernel", source, 2).shape[1]
    temperature = _need(flat, "t", source, 1)
    if temperature.shape != (1,):
        raise CheckpointError(f"{source}: t (the log temperature) has shape {temperature.shape}; expected (1,)")
    log_scale = float(temperature[0])
    if log_scale > MAX_LOG_SCALE:
        raise CheckpointError(f"{source}: t (the log temperature) is {log_scale:g}: exp(t), which scales the logits, "
                              f"overflows float32 (expected at most {MAX_LOG_SCALE:.2f})")
    return CLIPConfig(embed_dim=embed_dim, vision=vision, text=text, preprocess=tree.preprocess,
                      init_logit_scale=log_scale,
                      # big_vision does not clamp the temperature: a clamp below the stored one would change it.
                      max_logit_scale=max(100.0, math.exp(log_scale)))


def _tower_configs(flat: Mapping[str, np.ndarray], tree: TreeLayout, source: str, *, image_size: int, patch: int,
                   arch: Architecture, has_cls: bool, learned: bool) -> tuple[VisionConfig, TextConfig]:
    numerics = {"activation": "gelu_tanh", "layer_norm_eps": 1e-6}
    vision = VisionConfig(
        image_size=image_size, patch_size=patch, **_encoder_shape(flat, "img/Transformer", source),
        # Without a class token the field means nothing; the default keeps such configs equal to our own.
        class_token_position=tree.class_token_position if has_cls else True,
        patch_bias="img/embedding/bias" in flat, head_bias="img/head/bias" in flat,
        pos_embed="learned" if learned else "sincos2d", **numerics, **arch.vision)
    vocab, _ = _need(flat, "txt/Embed_0/embedding", source, 2).shape
    context = _need(flat, "txt/pos_embedding", source, 3).shape[1]
    text = TextConfig(context_length=context, vocab_size=vocab, pool=arch.text,
                      **_encoder_shape(flat, "txt/Encoder_0", source), head_bias="txt/head/bias" in flat, **numerics)
    return vision, text
