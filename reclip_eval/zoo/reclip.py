"""Adapter for our own checkpoints (reclip_eval.models.CLIP)."""

from __future__ import annotations

from typing import Any

import torch

from reclip_eval.checkpoint import WEIGHTS_NAME, CheckpointSource, file_sha256, load_model
from reclip_eval.data.transforms import describe_transform, image_transform
from reclip_eval.models.clip import CLIP
from reclip_eval.models.config import text_side
from reclip_eval.models.tokenizer import ClipTokenizer
from reclip_eval.zoo.adapter import ModelAdapter


class ReclipAdapter(ModelAdapter):
    def __init__(self, model: CLIP, model_id: str, source: CheckpointSource | None = None, sha256: str | None = None):
        self.model = model.eval()
        self.model_id = model_id
        self.source = source
        self.sha256 = sha256
        self.image_size = model.config.vision.image_size
        self.tokenizer = ClipTokenizer(model.config.text.context_length)
        self.transform = image_transform(self.image_size, model.config.preprocess)

    @classmethod
    def from_source(cls, source: CheckpointSource, model_id: str, image_size: int | None = None) -> ReclipAdapter:
        model = load_model(source.path, image_size=image_size)
        return cls(model, model_id, source, file_sha256(source.path / WEIGHTS_NAME))

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels.to(self._device()), normalize=True)

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens.to(self._device()), normalize=True)

    def _device(self) -> torch.device:
        return self.model.logit_scale.device

    def to(self, device: str | torch.device) -> ReclipAdapter:
        self.model.to(device)
        return self

    def _training_compute(self) -> dict[str, Any]:
        """What the checkpoint's training.json says the weights cost (empty when it has none)."""
        import json

        path = self.source.path / "training.json" if self.source is not None else None
        if path is None or not path.is_file():
            return {}
        record = json.loads(path.read_text(encoding="utf-8"))
        # Records written before device-hours were kept have the (single-device) wall time.
        hours = record.get("device_hours", round(record.get("wall_time_s", 0) / 3600, 4))
        stages = record.get("stages", [])
        # Forward MACs of both towers over all training samples (Table 2's convention), when every stage has them.
        counted = stages and all(s.get("gmacs_per_sample") is not None for s in stages)
        train_gmacs = round(sum(s["gmacs_per_sample"] * s["samples_seen"] for s in stages), 1) if counted else None
        return {"train_device_hours": hours, "train_samples_seen": record.get("samples_seen"),
                "train_gmacs": train_gmacs, "train_device": record.get("device")}

    def text_config(self) -> dict[str, Any]:
        return {"family": "reclip", **text_side(self.model.config)}

    def describe(self) -> dict[str, Any]:
        config = self.model.config
        weights: dict[str, Any] = {"sha256": self.sha256}
        if self.source is not None:
            weights.update({"path": str(self.source.path), "hub_repo": self.source.repo_id,
                            "hub_revision": self.source.revision, "hub_commit": self.source.commit})
        return {
            "id": self.model_id,
            "family": "reclip",
            "compute": self._training_compute(),
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
