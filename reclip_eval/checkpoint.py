"""Checkpoint directories in the Hugging Face Hub layout, loaded strictly and from safetensors only.

    config.json         architecture, tokenizer, image size, normalisation, pos-embed resampling mode
    model.safetensors   weights (never a pickle)
    README.md           model card with `model-index` metadata
    recipe.yaml         the resolved training recipe that produced the weights (when trained here)
    training.json       what the trainer recorded: stages run, steps, samples seen, wall time, device

Loading checks the config first: every architecture key of `format_version` 1 is required (a missing one is named
with the file, before any tensor is read). Format 1 is the only format this project has written (every key present
since the first commit); a change of format bumps FORMAT_VERSION and adds a named step migrating the older files.
Then every tensor: a missing or unexpected key, a shape that differs from the config, or a NaN/inf value is an error
naming the tensor; the one exception is the image position embedding, resampled to the requested image size.
The model is built on the meta device (no random initialisation, which every tensor would overwrite anyway) and
the file's tensors become its parameters (`load_state_dict(assign=True)`), cast to the model's dtypes.
This module is the one reader and writer of these folders (the model class does no I/O); `load_checkpoint` takes a
folder or a Hub repo id, fetched through reclip_eval.hub.

The weights fingerprint (`sha256` in results, caches and model cards) is the sha256 of the model.safetensors bytes:
tensor names, dtypes, shapes and values, plus its fixed header metadata. It does not cover config.json (architecture,
preprocessing, pos-embed resampling mode), which results record separately. Saving is deterministic: two saves of
the same tensors are byte-identical, so one set of weights has one fingerprint (casting to float16 is another file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import typing
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from reclip_eval.atomic import atomic_dir, atomic_path, write_json_atomic, write_text_atomic
from reclip_eval.config import from_dict, to_dict
from reclip_eval.errors import CheckpointError, ConfigError, read_json
from reclip_eval.hub import HUB_PREFIX, CheckpointSource, download_snapshot
from reclip_eval.models.config import CLIPConfig, ImageSize, image_hw
from reclip_eval.models.finite import all_finite
from reclip_eval.models.presets import with_image_size

if TYPE_CHECKING:  # torch is imported where tensors are: reading a config or a file name needs none
    import torch

    from reclip_eval.models.clip import CLIP

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
RECIPE_NAME = "recipe.yaml"
TRAINING_NAME = "training.json"
ARCHITECTURE = "reclip-clip"
FORMAT_VERSION = 2
# Version 1 (before the imported architectures' options, issue 16) had one architecture for these keys: the values
# below. A version-1 file means exactly them, so they are filled in; a version-2 file must state every key.
VERSION_1_IMPLIED = {
    "vision": {"class_token": False, "class_token_position": True, "norm_after_pool": False, "patch_bias": True,
               "head_bias": False, "pos_embed": "learned", "activation": "gelu", "layer_norm_eps": 1e-5,
               "final_norm": True},
    "text": {"head_bias": False, "activation": "gelu", "layer_norm_eps": 1e-5},
}
# Keys added to format_version 2 after files were written without them (big_vision import options, issue 34): a
# version-2 file without one was written when the architecture had only the value below, so it means exactly that.
ADDED_TO_VERSION_2 = {"vision": {"final_norm": True}}
POS_EMBED_KEY = "visual.pos_embed"
HUB_FILES = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, RECIPE_NAME, TRAINING_NAME, "results/*.json"]


# --- writing ------------------------------------------------------------------------------------------------


def config_to_json(config: CLIPConfig) -> dict[str, Any]:
    return {"architecture": ARCHITECTURE, "format_version": FORMAT_VERSION, **to_dict(config)}


def write_config(config: CLIPConfig, directory: Path) -> None:
    write_json_atomic(directory / CONFIG_NAME, config_to_json(config))


def write_weights(model: torch.nn.Module, directory: Path, dtype: torch.dtype | None = None) -> None:
    """model.safetensors, written atomically; `dtype` (e.g. float16) casts floating tensors to make files smaller."""
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[key] = tensor
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_safetensors(state, tmp)


def save_safetensors(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write `state` as safetensors, byte-identical for identical tensors (the file's sha256 is its fingerprint).

    One metadata entry only: safetensors serialises the metadata from a hash map whose order changes from save to
    save, so two entries gave two different files (and two sha256) for the same weights. Tensor order is fixed by
    the library (sorted by dtype alignment and name)."""
    from safetensors.torch import save_file

    save_file(state, str(path), metadata={"format": "pt"})


def save_checkpoint(
    model: CLIP,
    directory: str | Path,
    *,
    recipe_yaml: str | None = None,
    training: dict[str, Any] | None = None,
    card: str | None = None,
    dtype: torch.dtype | None = None,
    in_place: bool = False,
) -> Path:
    """Write a complete checkpoint directory atomically (built in a temp dir, then swapped into place).

    `in_place=True` writes each file atomically into `directory` instead and leaves everything else in it alone
    (a training run's folder, which may hold the user's files, resume points and curves beside the model);
    config.json comes last, so a reader never finds a config without its weights."""
    directory = Path(directory)
    with contextlib.nullcontext(directory) if in_place else atomic_dir(directory) as folder:
        folder.mkdir(parents=True, exist_ok=True)
        write_weights(model, folder, dtype=dtype)
        if recipe_yaml is not None:
            write_text_atomic(folder / RECIPE_NAME, recipe_yaml)
        if training is not None:
            write_json_atomic(folder / TRAINING_NAME, training)
        if card is not None:
            write_text_atomic(folder / CARD_NAME, card)
        write_config(model.config, folder)
    return directory


# --- reading ------------------------------------------------------------------------------------------------


def read_config(directory: str | Path) -> CLIPConfig:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a checkpoint directory holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    data = read_json(path, CheckpointError)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    architecture = data.pop("architecture", None)
    if architecture != ARCHITECTURE:
        raise CheckpointError(
            f"{path}: architecture is {architecture!r}, expected {ARCHITECTURE!r}; for open_clip or HF "
            "transformers checkpoints use --model openclip:ARCH or hf:PATH"
        )
    version = data.pop("format_version", None)
    if version not in (1, FORMAT_VERSION):
        raise CheckpointError(f"{path}: format_version {version!r} is not supported (expected 1 or {FORMAT_VERSION})")
    if version == 1:
        for tower, implied in VERSION_1_IMPLIED.items():
            if isinstance(data.get(tower), dict):
                for key, value in implied.items():
                    if key in data[tower]:
                        raise CheckpointError(f"{path}: {tower}.{key} is not a format_version 1 key (a version-1 "
                                              "file has one architecture for it)")
                    data[tower][key] = value
    else:
        for tower, added in ADDED_TO_VERSION_2.items():
            if isinstance(data.get(tower), dict):
                for key, value in added.items():
                    data[tower].setdefault(key, value)
    # The dataclass defaults are for building new models; a stored model must say what it is, or a missing key
    # would silently load as another architecture or preprocessing.
    missing = missing_keys(CLIPConfig, data)
    if missing:
        raise CheckpointError(f"{path}: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                              f"(every key of format_version {version} is required)")
    try:
        return from_dict(CLIPConfig, data, source=str(path))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None


def missing_keys(cls: type, data: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields of dataclass `cls` (and of its nested dataclasses) that `data` lacks."""
    if not isinstance(data, dict):
        return []  # a wrong type is reported by from_dict, with the expected type
    hints = typing.get_type_hints(cls)
    missing = []
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        if field.name not in data:
            missing.append(key)
        elif dataclasses.is_dataclass(hints[field.name]):
            missing += missing_keys(hints[field.name], data[field.name], f"{key}.")
    return missing


def nonfinite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating tensors in `state` that hold a NaN or an infinity (checked a chunk at a time)."""
    return sorted(k for k, t in state.items() if not all_finite(t))


def check_finite(state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Refuse weights holding NaN or inf: such a model evaluates at chance and would look like a real result."""
    bad = nonfinite_tensors(state)
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        counted = f"{len(bad)} tensors hold" if len(bad) > 1 else "1 tensor holds"
        raise CheckpointError(f"{source}: {counted} NaN or inf values ({shown}); the weights are broken (a "
                              "diverged training run?) and would evaluate at chance")


def check_image_size(image_size: ImageSize, patch_size: int, source: str | Path) -> None:
    """An image size (an int, or (height, width)) must tile into whole patches on each side; say which would."""
    for side, value in zip(("height", "width"), image_hw(image_size), strict=True):
        if value % patch_size == 0:
            continue
        lower, upper = value // patch_size * patch_size, (value // patch_size + 1) * patch_size
        near = " or ".join(str(s) for s in (lower, upper) if s > 0)
        what = f"image size {image_size}" if isinstance(image_size, int) else \
            f"image size {list(image_size)}: {side} {value}"
        raise CheckpointError(f"{source}: {what} is not a multiple of the model's patch size {patch_size}; "
                              f"use {near}")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (a pickle, a truncated download) or NaN/inf values is a CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise missing_weights_error(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({e}); the file may be truncated or in another format"
        ) from None
    check_finite(state, path)
    return state


def missing_weights_error(path: Path) -> CheckpointError:
    """The error for a weights file that is not there, naming the pickles beside it that are never loaded."""
    others = sorted(p.name for p in path.parent.glob("*.bin")) + sorted(p.name for p in path.parent.glob("*.pt*"))
    hint = f" (found {', '.join(others)}: pickled weights are never loaded; convert them to safetensors)" if others else ""
    return CheckpointError(f"{path}: missing{hint}")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_state_into(model: CLIP, state: dict[str, torch.Tensor], stored: CLIPConfig, *, source: str,
                    assign: bool = False) -> None:
    """Load `state` (saved with config `stored`) into `model`, resampling only the image position embedding.

    `assign=True` makes the (cast) tensors the model's parameters, for a model built on the meta device; then
    anything the checkpoint does not hold (a non-persistent buffer) would stay unmaterialised and is refused."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    converted = {}
    for key, target in expected.items():
        if key not in state:
            continue
        tensor = state[key]
        if key == POS_EMBED_KEY:
            tensor = _pos_embed_at(tensor, stored, model.config, source)
        if tensor.shape != target.shape:
            problems.append(f"{key}: checkpoint shape {tuple(tensor.shape)}, model expects {tuple(target.shape)}")
            continue
        # Assigned tensors are copied too: safetensors hands out buffers that are not 64-byte aligned, and CPU
        # kernels then take other code paths, so a loaded model would not reproduce the saved one's outputs bit
        # for bit. (Without assign, load_state_dict copies into the model's own, aligned, tensors.)
        converted[key] = tensor.to(target.dtype, copy=assign)
    if problems:
        raise CheckpointError(f"{source}: does not match its config:\n" + "\n".join(f"  - {p}" for p in problems))
    model.load_state_dict(converted, strict=True, assign=assign)
    if assign:
        model.build_fixed_buffers()
    unset = [name for name, t in chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
    if unset:
        raise CheckpointError(f"{source}: {', '.join(unset)} not in the checkpoint and never built (a buffer "
                              "that is not saved must be built after a meta-device load)")


def _pos_embed_at(tensor: torch.Tensor, stored: CLIPConfig, target: CLIPConfig, source: str) -> torch.Tensor:
    """The stored position embedding on `target`'s grid (one log line when it is resampled)."""
    from reclip_eval.models.pos_embed import resize_pos_embed

    try:
        resize = resize_pos_embed(tensor, stored.vision.grid_hw, target.vision, target.pos_embed_resample)
    except ValueError as e:
        raise CheckpointError(f"{source}: {POS_EMBED_KEY} does not match its {CONFIG_NAME} (image_size "
                              f"{stored.vision.image_size}, patch {stored.vision.patch_size}): {e}") from None
    if resize.description is not None:
        log.info("%s: resampling %s %s", source, POS_EMBED_KEY, resize.description)
    return resize.pos_embed


def load_model(directory: str | Path, *, image_size: ImageSize | None = None, map_location: str = "cpu",
               init: Literal["meta", "random"] = "meta") -> CLIP:
    """Build the model from `directory/config.json` (at `image_size`, an int or (height, width), if given) and
    load its weights strictly.

    `init="random"` is the former path, kept so that benchmarks/load_time.py can measure both: the model built
    with its random initialisation, then every tensor copied over it."""
    import torch

    from reclip_eval.models.clip import CLIP

    directory = Path(directory)
    stored = read_config(directory)
    if image_size:
        check_image_size(image_size, stored.vision.patch_size, directory)
    config = with_image_size(stored, image_size) if image_size else stored
    state = read_weights(directory / WEIGHTS_NAME)
    if init == "meta":
        with torch.device("meta"):
            model = CLIP(config)
    elif init == "random":
        model = CLIP(config)
    else:
        raise ValueError(f"init {init!r} is not 'meta' or 'random'")
    load_state_into(model, state, stored, source=str(directory), assign=init == "meta")
    return model.to(map_location).eval()


def resolve_checkpoint(
    name_or_path: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> CheckpointSource:
    """A local directory, or a Hub repo id downloaded (or read from the HF cache when offline) and pinned."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return CheckpointSource(path=path.resolve())
    if path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise CheckpointError(f"{name_or_path}: not a checkpoint directory (expected a folder with {CONFIG_NAME})")
    source = download_snapshot(name_or_path, allow_patterns=HUB_FILES, revision=revision, cache_dir=cache_dir,
                               force_download=force_download, token=token, local_files_only=local_files_only)
    if not (source.path / CONFIG_NAME).is_file():
        raise CheckpointError(f"{HUB_PREFIX}{name_or_path}: the repository has no {CONFIG_NAME}; is it a reclip-eval "
                              "checkpoint?")
    return source


def load_checkpoint(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    image_size: ImageSize | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    token: str | bool | None = None,
    local_files_only: bool = False,
    map_location: str = "cpu",
) -> CLIP:
    """The model in a local checkpoint dir or a Hub repo id (the HF cache is used offline, HF_HUB_OFFLINE=1).

    `image_size` builds the model at another size and resamples the position embedding to it."""
    source = resolve_checkpoint(str(name_or_path), revision=revision, cache_dir=cache_dir,
                                force_download=force_download, token=token, local_files_only=local_files_only)
    return load_model(source.path, image_size=image_size, map_location=map_location)


def is_checkpoint_dir(path: str | Path) -> bool:
    return os.path.isfile(os.path.join(path, CONFIG_NAME))
