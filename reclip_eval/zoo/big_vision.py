"""The `big_vision` model kind: `--model big_vision:PATH.npz` evaluates a big_vision or CLIPA two-tower checkpoint
(reclip_eval.flax_models.big_vision_npz reads it) with this project's model, on either backend (`--backend jax`
runs the flax twin of the same weights). The tree layout is recognised from the file; `--image-size` builds the
model at another input size (a learned position grid is resampled, a sin-cos one recomputed); `--model-config FILE`
is big_vision's model config (JSON or YAML), for what the weights cannot tell (the pooling; without it such a tree
is refused naming the key). The big_vision options used are recorded in the results (`model.architecture`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from reclip_eval.checkpoint import check_image_size, file_sha256, load_state_into
from reclip_eval.errors import CheckpointError
from reclip_eval.flax_models.big_vision_npz import import_two_towers
from reclip_eval.models.presets import with_image_size
from reclip_eval.models.tokenizers import parse_tokenizer_spec, tokenizer_for_tree
from reclip_eval.models.tokenizers_registry import FileTokenizer, TextTokenizer
from reclip_eval.zoo.model_kinds import LoadRequest, PrefixForm, register_model_kind
from reclip_eval.zoo.reclip import ReclipAdapter

if TYPE_CHECKING:  # torch and the model are imported on use: the kind registers itself without them
    import torch

    from reclip_eval.models.clip import CLIP

PREFIX = "big_vision:"


class ImportedAdapter(ReclipAdapter):
    """Our model holding weights imported from a big_vision / CLIPA file: its results say where they came from."""

    def __init__(self, model: CLIP, model_id: str, path: Path, layout: str, sha256: str,
                 architecture: dict[str, Any] | None = None, tokenizer: TextTokenizer | None = None):
        super().__init__(model, model_id, source=None, sha256=sha256)
        self.path, self.layout, self.architecture = path, layout, architecture or {}
        if tokenizer is not None:  # the tree's own vocabulary (models/tokenizers.py); CLIP's BPE otherwise
            self.tokenizer = tokenizer

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        described["family"] = self.layout
        described["weights"] = {"sha256": self.sha256, "path": str(self.path), "format": f"{self.layout} .npz"}
        described["architecture"] = self.architecture
        if hasattr(self.tokenizer, "describe"):  # kind, file sha256, vocabulary size and rules
            described["tokenizer"] = self.tokenizer.describe()
        return described

    def decisive_text_length(self, tokens: torch.Tensor) -> int | None:
        # The cut reads CLIP's ids (the end token is the largest id, padding is 0): other vocabularies run uncut.
        return None if isinstance(self.tokenizer, FileTokenizer) else super().decisive_text_length(tokens)


def load_npz_model(path: Path, *, image_size: int | None = None,
                   model_config: str | Path | dict[str, Any] | None = None,
                   any_vocabulary: bool = False) -> tuple[CLIP, str, dict[str, Any]]:
    """Our torch model with the file's weights (at `image_size` if given), the tree layout it was read as and the
    big_vision options used (`model_config`: big_vision's model config, a path or a mapping)."""
    import torch

    from reclip_eval.models.clip import CLIP

    imported = import_two_towers(path, image_size=image_size, model_config=model_config,
                                 any_vocabulary=any_vocabulary)
    stored = imported.config
    if image_size:
        check_image_size(image_size, stored.vision.patch_size, path)
    target = with_image_size(stored, image_size) if image_size else stored
    with torch.device("meta"):
        model = CLIP(target)
    state = {key: torch.from_numpy(array) for key, array in imported.state.items()}
    load_state_into(model, state, stored, source=str(path), assign=True)
    return model.eval(), imported.layout, imported.architecture


def _load_spec(argument: str, request: LoadRequest) -> ImportedAdapter:
    if not argument:
        raise CheckpointError(f"{PREFIX}PATH needs the path of a .npz checkpoint after the colon")
    path = Path(argument).expanduser()
    # The spec and its file are checked before the weights are read; the vocabulary against the tree after.
    spec = parse_tokenizer_spec(request.tokenizer) if request.tokenizer is not None else None
    model, layout, architecture = load_npz_model(path, image_size=request.image_size,
                                                 model_config=request.model_config, any_vocabulary=spec is not None)
    text = model.config.text
    tokenizer = tokenizer_for_tree(spec, rows=text.vocab_size, context_length=text.context_length, source=str(path))
    return ImportedAdapter(model, request.model_id, path, layout, file_sha256(path), architecture, tokenizer)


@register_model_kind("big_vision", priority=50, recognise=lambda folder: False,
                     layout="a big_vision or CLIPA two-tower checkpoint .npz (by prefix only: big_vision:PATH)",
                     prefix_form=PrefixForm(PREFIX, "PATH", _load_spec, model_config=True, tokenizer=True))
def _no_folder(folder: Path, request: LoadRequest) -> ImportedAdapter:
    raise CheckpointError(f"{folder}: big_vision checkpoints are single .npz files; use {PREFIX}PATH")
