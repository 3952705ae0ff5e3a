"""`--model` spec strings -> a loaded ModelAdapter.

    NAME                      a named model (model_cards/NAME.yaml), weights from the card or --checkpoint DIR
    path/to/dir               a checkpoint folder: ours (config.json), open_clip (open_clip_config.json),
                              transformers CLIPModel (config.json with model_type "clip"), or one of our
                              detectors (config.json with architecture "reclip-detector", detection tasks)
    hf-hub:org/name[@rev]     any of those kinds on the Hugging Face Hub (the local cache when HF_HUB_OFFLINE=1)
    openclip:ARCH             an open_clip architecture; weights from --checkpoint FILE.safetensors, or none with
                              random_init=True (--random-init), which marks the model id and the results

`image_size` builds any of these at another input size, the position embedding resampled by our one resampler
(ViT image towers only; any other is refused).
    hf:PATH                   a transformers CLIPModel folder
"""

from __future__ import annotations

import json
from pathlib import Path

from reclip_eval.checkpoint import (
    CONFIG_NAME,
    HUB_FILES,
    WEIGHTS_NAME,
    CheckpointSource,
    download_snapshot,
    read_config,
    resolve_checkpoint,
)
from reclip_eval.config import to_dict
from reclip_eval.errors import CheckpointError, MissingWeightsError
from reclip_eval.models.presets import with_image_size
from reclip_eval.zoo.adapter import ModelAdapter
from reclip_eval.zoo.cards import ModelCardSpec, load_card
from reclip_eval.zoo.reclip import ReclipAdapter

HUB_PREFIX = "hf-hub:"
OPENCLIP_PREFIX = "openclip:"
HF_PREFIX = "hf:"
# Files worth downloading from a Hub repo of any supported kind (never pickles).
HUB_ANY_FILES = HUB_FILES + ["open_clip_config.json", "open_clip_model.safetensors", "preprocessor_config.json",
                             "tokenizer*", "vocab.json", "merges.txt", "special_tokens_map.json"]


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """'hf-hub:org/name@rev' -> ('org/name', 'rev')."""
    body = spec[len(HUB_PREFIX):] if spec.startswith(HUB_PREFIX) else spec
    repo, _, revision = body.partition("@")
    return repo, revision or None


def folder_kind(folder: Path) -> str:
    """'reclip', 'open_clip' or 'hf_transformers', from the files the folder holds."""
    if (folder / "open_clip_config.json").is_file():
        return "open_clip"
    config = folder / CONFIG_NAME
    if config.is_file():
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{config}: not valid JSON ({e})") from None
        if data.get("architecture") == "reclip-clip":
            return "reclip"
        if data.get("architecture") == "reclip-detector":
            return "reclip_detector"
        if data.get("model_type") == "clip":
            return "hf_transformers"
        raise CheckpointError(f"{config}: neither a reclip-eval checkpoint (architecture 'reclip-clip') nor a "
                              f"transformers CLIP model (model_type 'clip'); found {sorted(data)[:8]}")
    raise CheckpointError(f"{folder}: no {CONFIG_NAME} or open_clip_config.json: not a model folder")


def _adapter_for_folder(folder: Path, model_id: str, image_size: int | None,
                        source: CheckpointSource | None = None) -> ModelAdapter:
    kind = folder_kind(folder)
    hub = {"hub_repo": source.repo_id, "hub_revision": source.revision, "hub_commit": source.commit} \
        if source and source.repo_id else {}
    if kind == "reclip":
        return ReclipAdapter.from_source(source or CheckpointSource(path=folder.resolve()), model_id, image_size)
    if kind == "reclip_detector":
        if image_size:
            raise CheckpointError(f"{model_id}: a detector runs at its trained canvas size; drop --image-size")
        from reclip_eval.detect.adapter import DetectorAdapter

        return DetectorAdapter.from_dir(folder, model_id)
    if kind == "open_clip":
        from reclip_eval.zoo.openclip import OpenClipAdapter

        return OpenClipAdapter.from_dir(folder, model_id, hub, image_size=image_size)
    from reclip_eval.zoo.hf_clip import HFClipAdapter

    return HFClipAdapter(folder, model_id, hub, image_size=image_size)


def load_adapter(
    model: str,
    *,
    checkpoint: str | None = None,
    image_size: int | None = None,
    device: str = "cpu",
    random_init: bool = False,
) -> ModelAdapter:
    """The adapter for the `--model` spec `model` (see the module docstring), at `image_size` if given.

    `random_init` evaluates an `openclip:ARCH` without weights on purpose; without it a missing --checkpoint is
    an error, since random weights would look like a real (chance-level) result."""
    if random_init and not model.startswith(OPENCLIP_PREFIX):
        raise CheckpointError(f"{model}: --random-init applies to openclip:ARCH models only; drop it")
    return _load(model, checkpoint, image_size, random_init).to(device)


def _load(model: str, checkpoint: str | None, image_size: int | None, random_init: bool) -> ModelAdapter:
    if model.startswith(HUB_PREFIX):
        repo, revision = parse_hub_spec(model)
        source = download_snapshot(repo, revision=revision, allow_patterns=HUB_ANY_FILES)
        return _adapter_for_folder(source.path, model, image_size, source)
    if model.startswith(OPENCLIP_PREFIX):
        from reclip_eval.zoo.openclip import OpenClipAdapter

        arch = model[len(OPENCLIP_PREFIX):]
        if Path(arch).expanduser().is_dir():
            if random_init:
                raise CheckpointError(f"{model}: a folder holds its weights; --random-init is for openclip:ARCH")
            return OpenClipAdapter.from_dir(Path(arch).expanduser(), model, image_size=image_size)
        return OpenClipAdapter.from_arch(arch, checkpoint, model, image_size=image_size, random_init=random_init)
    if model.startswith(HF_PREFIX):
        from reclip_eval.zoo.hf_clip import HFClipAdapter

        return HFClipAdapter(Path(model[len(HF_PREFIX):]).expanduser(), model, image_size=image_size)
    path = Path(model).expanduser()
    if checkpoint is None and path.is_dir():
        return _adapter_for_folder(path, str(Path(model)), image_size)
    if path.is_file() and path.suffix not in (".yaml", ".yml"):  # a model card YAML is a named model's file
        hint = f"; for open_clip weights use --model openclip:ARCH --checkpoint {model}" \
            if path.suffix == ".safetensors" else ""
        raise CheckpointError(f"{model}: a file, not a checkpoint directory (expected a folder with {CONFIG_NAME} "
                              f"and {WEIGHTS_NAME}, or open_clip_config.json){hint}")
    card = load_card(model)
    source = _source_from_spec(checkpoint) if checkpoint else _card_source(card)
    _check_matches_card(card, source)
    return ReclipAdapter.from_source(source, card.name, image_size)


def _source_from_spec(spec: str) -> CheckpointSource:
    if spec.startswith(HUB_PREFIX):
        repo, revision = parse_hub_spec(spec)
        return resolve_checkpoint(repo, revision=revision)
    return resolve_checkpoint(spec)


def _check_matches_card(card: ModelCardSpec, source: CheckpointSource) -> None:
    """A checkpoint given for a named model must have that model's architecture (image size may differ)."""
    stored = read_config(source.path)
    expected = with_image_size(card.config(), stored.vision.image_size)
    if stored != expected:
        ours, theirs = to_dict(expected), to_dict(stored)
        diffs = [f"{k}: card {ours[k]!r}, checkpoint {theirs[k]!r}" for k in ours if ours[k] != theirs[k]]
        raise CheckpointError(
            f"{source.path}: is not a {card.name} checkpoint ({card.path} says otherwise):\n  " + "\n  ".join(diffs)
            + f"\n  evaluate it as a plain checkpoint instead: --model {source.path}"
        )


def _card_source(card: ModelCardSpec) -> CheckpointSource:
    if card.checkpoint is None:
        recipe = card.recipe or "<recipe>"
        raise MissingWeightsError(
            f"model {card.name!r} has no published weights (the paper's authors released none). Either\n"
            f"  - train it:    reclip-eval train {recipe} --out runs/{card.name}\n"
            f"    then evaluate: reclip-eval --model {card.name} --checkpoint runs/{card.name} --task ...\n"
            f"    and publish:   reclip-eval push-to-hub runs/{card.name} ORG/{card.name}\n"
            f"  - or pass weights you have: --checkpoint DIR, or --model hf-hub:org/name"
        )
    path = card.checkpoint_path()
    if path is not None:
        return resolve_checkpoint(str(path))
    return _source_from_spec(card.checkpoint)
