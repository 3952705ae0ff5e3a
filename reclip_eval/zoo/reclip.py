"""Adapter for our own checkpoints (reclip_eval.models.CLIP), and the `reclip` model kind: a folder whose config.json
says architecture 'reclip-clip'."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from reclip_eval.checkpoint import (
    ARCHITECTURE,
    CONFIG_NAME,
    HUB_FILES,
    WEIGHTS_NAME,
    CheckpointSource,
    file_sha256,
    load_model,
)
from reclip_eval.models.config import text_side
from reclip_eval.zoo.folder_checks import check_reclip_folder
from reclip_eval.zoo.model_kinds import LoadRequest, ModelFolder, register_model_kind
from reclip_eval.zoo.torch_adapter import TorchAdapter
from reclip_eval.zoo.training_record import training_compute

if TYPE_CHECKING:  # torch, torchvision and the model are imported on use: the kind registers itself without them
    import torch

    from reclip_eval.models.clip import CLIP


class ReclipAdapter(TorchAdapter):
    def __init__(self, model: CLIP, model_id: str, source: CheckpointSource | None = None, sha256: str | None = None):
        from reclip_eval.data.transforms import image_transform
        from reclip_eval.models.tokenizer import ClipTokenizer

        self.model = model.eval()
        self.model_id = model_id
        self.source = source
        self.sha256 = sha256
        self.image_size = model.config.vision.image_size
        self.tokenizer = ClipTokenizer(model.config.text.context_length)
        self.transform = image_transform(self.image_size, model.config.preprocess)

    @classmethod
    def from_source(cls, source: CheckpointSource, model_id: str, image_size: int | None = None) -> ReclipAdapter:
        check_reclip_folder(source.path)  # every way to our checkpoints (folder, named model, Hub repo) comes here
        model = load_model(source.path, image_size=image_size)
        return cls(model, model_id, source, file_sha256(source.path / WEIGHTS_NAME))

    def placed_modules(self) -> list[CLIP]:
        return [self.model]

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels, normalize=True)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens, normalize=True)

    def decisive_text_length(self, tokens: torch.Tensor) -> int | None:
        return self.model.text.decisive_length(tokens)  # by the tower's pooling (models/text.py)

    def text_config(self) -> dict[str, Any]:
        return {"family": "reclip", **text_side(self.model.config)}

    def describe(self) -> dict[str, Any]:
        from reclip_eval.data.transforms import describe_transform

        config = self.model.config
        weights: dict[str, Any] = {"sha256": self.sha256}
        if self.source is not None:
            weights.update({"path": str(self.source.path), "hub_repo": self.source.repo_id,
                            "hub_revision": self.source.revision, "hub_commit": self.source.commit})
        return {
            "id": self.model_id,
            "family": "reclip",
            "compute": training_compute(self.source.path if self.source is not None else None),
            "weights": weights,
            "image_size": self.image_size,
            "preprocess": describe_transform(self.image_size, config.preprocess),
            "tokenizer": {"name": config.text.tokenizer, "context_length": config.text.context_length},
            "pos_embed_resample": {
                "mode": config.pos_embed_resample.mode,
                "align_corners": config.pos_embed_resample.align_corners,
                "antialias": config.pos_embed_resample.antialias,
            },
        }


def _is_reclip_folder(folder: ModelFolder) -> bool:
    return folder.config_says("architecture", ARCHITECTURE)


@register_model_kind("reclip", priority=20, recognise=_is_reclip_folder, hub_files=HUB_FILES,
                     layout=f"{CONFIG_NAME} with architecture {ARCHITECTURE!r}, {WEIGHTS_NAME}")
def load_reclip_folder(folder: Path, request: LoadRequest) -> ReclipAdapter:
    source = request.source or CheckpointSource(path=folder.resolve())
    return ReclipAdapter.from_source(source, request.model_id, request.image_size)
