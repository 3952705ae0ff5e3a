"""`--model` spec strings -> a loaded ModelAdapter.

    NAME                  a named model (model_cards/NAME.yaml), weights from the card or --checkpoint DIR
    hf-hub:org/name[@rev] a checkpoint repo on the Hugging Face Hub (the local cache when HF_HUB_OFFLINE=1)
    path/to/dir           a local checkpoint directory (config.json + model.safetensors)
"""

from __future__ import annotations

from pathlib import Path

from reclip_eval.checkpoint import CheckpointSource, is_checkpoint_dir, read_config, resolve_checkpoint
from reclip_eval.config import to_dict
from reclip_eval.errors import CheckpointError, MissingWeightsError
from reclip_eval.models.presets import with_image_size
from reclip_eval.zoo.adapter import ModelAdapter
from reclip_eval.zoo.cards import ModelCardSpec, load_card
from reclip_eval.zoo.reclip import ReclipAdapter

HUB_PREFIX = "hf-hub:"


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """'hf-hub:org/name@rev' -> ('org/name', 'rev')."""
    body = spec[len(HUB_PREFIX):] if spec.startswith(HUB_PREFIX) else spec
    repo, _, revision = body.partition("@")
    return repo, revision or None


def _source_from_spec(spec: str) -> CheckpointSource:
    if spec.startswith(HUB_PREFIX):
        repo, revision = parse_hub_spec(spec)
        return resolve_checkpoint(repo, revision=revision)
    return resolve_checkpoint(spec)


def load_adapter(
    model: str,
    *,
    checkpoint: str | None = None,
    image_size: int | None = None,
    device: str = "cpu",
) -> ModelAdapter:
    if model.startswith(HUB_PREFIX) or (checkpoint is None and is_checkpoint_dir(model)):
        source = _source_from_spec(model)
        model_id = model if model.startswith(HUB_PREFIX) else str(Path(model))
        return ReclipAdapter.from_source(source, model_id, image_size).to(device)
    card = load_card(model)
    source = _source_from_spec(checkpoint) if checkpoint else _card_source(card)
    _check_matches_card(card, source)
    return ReclipAdapter.from_source(source, card.name, image_size).to(device)


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
            f"    and publish:   push the run directory to the Hub (huggingface_hub upload_folder / `hf upload`)\n"
            f"  - or pass weights you have: --checkpoint DIR, or --model hf-hub:org/name"
        )
    path = card.checkpoint_path()
    if path is not None:
        return resolve_checkpoint(str(path))
    return _source_from_spec(card.checkpoint)
