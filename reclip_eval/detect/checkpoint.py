"""Detector checkpoint directories, written atomically and loaded strictly from safetensors:

    config.json         architecture "reclip-detector": DetectorConfig, prompt templates, base vocabulary
    model.safetensors   the detector's trained weights (backbone copy, pyramid, RPN, heads, background embedding)
    clip/               the CLIP checkpoint it started from, unchanged (reclip_eval.checkpoint layout): its frozen
                        image tower gives the open-vocabulary region scores, its text tower the class embeddings
    recipe.yaml         the resolved detector recipe
    training.json       steps, losses, wall time, device
    README.md           what this is and how it was made
    run.json            the run marker (reclip_eval/run_folder.py): a folder `detect train` may write into again

Written file by file into the output folder (clip/ replaced whole), config.json last, so files of the user's beside
them are never deleted; `check_out_dir` refuses a folder that is neither new, empty nor one of ours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reclip_eval.atomic import atomic_path, clean_stale, write_json_atomic, write_text_atomic
from reclip_eval.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    file_sha256,
    load_model,
    read_weights,
    save_checkpoint,
    save_safetensors,
)
from reclip_eval.config import from_dict, to_dict
from reclip_eval.detect.config import DetectorConfig
from reclip_eval.errors import CheckpointError, ConfigError, read_json
from reclip_eval.run_folder import MARKER, RunFolderError, read_marker, refuse_foreign, write_marker

if TYPE_CHECKING:  # the detector (torch, torchvision) is imported on use: the kind registers itself without it
    from reclip_eval.detect.model import OpenVocabDetector
    from reclip_eval.models.clip import CLIP

ARCHITECTURE = "reclip-detector"
FORMAT_VERSION = 1
CLIP_DIR = "clip"
RUN_KIND = "reclip-eval detect train"
_OWN_NAMES = frozenset({CONFIG_NAME, WEIGHTS_NAME, CLIP_DIR, "recipe.yaml", "training.json", "README.md", MARKER})


@dataclass
class LoadedDetector:
    detector: OpenVocabDetector
    clip: CLIP  # frozen: text tower for the vocabulary
    config: DetectorConfig
    templates: list[str]
    base_vocabulary: list[str]  # category names trained on; anything else is novel at inference
    path: Path | None = None
    sha256: str | None = None  # of model.safetensors
    clip_sha256: str | None = None
    extra: dict[str, Any] | None = None  # the rest of config.json (backbone source, ...)


def is_detector_dir(path: str | Path) -> bool:
    config = Path(path) / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("architecture") == ARCHITECTURE
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def check_out_dir(directory: str | Path) -> None:
    """Refuse to train into `directory` unless it is new, empty, or an unfinished detector run of ours (a kill
    before its end); a finished detector there is kept. Call before any data or model is touched."""
    directory = Path(directory)
    choices = "choose a new or empty --out"
    if not refuse_foreign(directory, RUN_KIND, looks_like_ours=is_detector_dir(directory), choices=choices):
        return
    marker = read_marker(directory)
    if marker is None or marker.get("status") == "finished":
        raise RunFolderError(f"{directory}: holds a trained detector ({directory / WEIGHTS_NAME}); nothing was "
                             f"changed; {choices}, or delete it to train again")
    clean_stale(directory, _OWN_NAMES.__contains__)  # temp files of the killed run's save


def save_detector(directory: str | Path, loaded: LoadedDetector, *, recipe_yaml: str | None = None,
                  training: dict[str, Any] | None = None, card: str | None = None) -> Path:
    directory = Path(directory)
    write_marker(directory, RUN_KIND, "running")
    state = {k: v.detach().to("cpu").contiguous() for k, v in loaded.detector.trainable_state_dict().items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_safetensors(state, tmp)  # byte-identical for identical weights (its sha256 is the fingerprint)
    save_checkpoint(loaded.clip, directory / CLIP_DIR)
    if recipe_yaml is not None:
        write_text_atomic(directory / "recipe.yaml", recipe_yaml)
    if training is not None:
        write_json_atomic(directory / "training.json", training)
    if card is not None:
        write_text_atomic(directory / "README.md", card)
    write_json_atomic(directory / CONFIG_NAME, {
        "architecture": ARCHITECTURE, "format_version": FORMAT_VERSION, "detector": to_dict(loaded.config),
        "templates": loaded.templates, "base_vocabulary": loaded.base_vocabulary, "clip": CLIP_DIR,
        **(loaded.extra or {}),
    })
    write_marker(directory, RUN_KIND, "finished")
    return directory


def load_detector(directory: str | Path, map_location: str = "cpu") -> LoadedDetector:
    from reclip_eval.detect.model import OpenVocabDetector

    directory = Path(directory).expanduser()
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a detector directory holds {CONFIG_NAME}, {WEIGHTS_NAME} and "
                              f"{CLIP_DIR}/ (train one with `reclip-eval detect train`)")
    data = read_json(path, CheckpointError)
    if data.get("architecture") != ARCHITECTURE:
        raise CheckpointError(f"{path}: architecture is {data.get('architecture')!r}, expected {ARCHITECTURE!r}")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {data.get('format_version')!r} is not supported")
    try:
        config = from_dict(DetectorConfig, data.get("detector"), source=str(path))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    clip_dir = directory / data.get("clip", CLIP_DIR)
    clip = load_model(clip_dir, map_location=map_location)
    detector = OpenVocabDetector(clip, config)
    state = read_weights(directory / WEIGHTS_NAME)
    expected = detector.trainable_state_dict()
    problems = [f"missing tensor {k}" for k in sorted(set(expected) - set(state))]
    problems += [f"unexpected tensor {k}" for k in sorted(set(state) - set(expected))]
    problems += [f"{k}: checkpoint shape {tuple(state[k].shape)}, detector expects {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if problems:
        raise CheckpointError(f"{directory}: does not match its config.json:\n" + "\n".join(f"  - {p}" for p in problems))
    detector.load_state_dict(state, strict=False)  # the frozen CLIP copy came from clip/ above; all else checked
    extra = {k: v for k, v in data.items()
             if k not in ("architecture", "format_version", "detector", "templates", "base_vocabulary", "clip")}
    return LoadedDetector(
        detector=detector.to(map_location).eval(), clip=clip.eval(), config=config,
        templates=list(data.get("templates") or []), base_vocabulary=list(data.get("base_vocabulary") or []),
        path=directory, sha256=file_sha256(directory / WEIGHTS_NAME),
        clip_sha256=file_sha256(clip_dir / WEIGHTS_NAME), extra=extra)


def detector_card(loaded: LoadedDetector, recipe_name: str, backbone: str, steps: int) -> str:
    return (f"# reclip-eval open-vocabulary detector\n\nMask R-CNN (torchvision) on a CLIP ViT backbone, RO-ViT style "
            f"(ViTDet backbone recipe, F-VLM classifier and score ensemble).\n\n- recipe: `{recipe_name}`, {steps} "
            f"steps\n- backbone: `{backbone}`\n- trained on {len(loaded.base_vocabulary)} base categories; others "
            f"are scored open-vocabulary (alpha {loaded.config.open_vocab.alpha}, beta "
            f"{loaded.config.open_vocab.beta})\n\nEvaluate: `reclip-eval --model THIS_DIR --task lvis` (or "
            f"`shapes-lvis`).\n")

