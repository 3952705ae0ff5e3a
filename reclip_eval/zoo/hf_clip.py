"""Adapter for Hugging Face transformers `CLIPModel` folders (`--model hf:PATH`, or a Hub repo via hf-hub:).

Loaded with `local_files_only=True` and `use_safetensors=True`, never `trust_remote_code`; images are
preprocessed by the folder's own `CLIPImageProcessor`, texts by its own tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reclip_eval.checkpoint import file_sha256
from reclip_eval.errors import CheckpointError
from reclip_eval.zoo.adapter import ModelAdapter


def _features(output: Any) -> torch.Tensor:
    # transformers 5 returns a BaseModelOutputWithPooling (projected pooler_output), 4.x a tensor.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class _ProcessorTransform:
    """PIL image -> (3, H, W) tensor through the model's own image processor (picklable for DataLoader workers)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image) -> torch.Tensor:
        return self.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        return f"{type(self.processor).__name__}({self.processor.to_dict()})"


class HFClipAdapter(ModelAdapter):
    def __init__(self, folder: Path, model_id: str, source: dict[str, Any] | None = None):
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise CheckpointError(f"{folder}: no model.safetensors; pickled weights are never loaded")
        try:
            self.model = CLIPModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True).eval()
            self.processor = CLIPImageProcessor.from_pretrained(str(folder), local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{folder}: not a transformers CLIPModel folder ({e})") from None
        self.folder = folder
        self.model_id = model_id
        self.sha256 = file_sha256(weights)
        self.source = source or {}
        self.transform = _ProcessorTransform(self.processor)
        crop = self.processor.crop_size  # a dict in transformers 4, a SizeDict in 5
        self.image_size = int(crop["height"] if isinstance(crop, dict) else getattr(crop, "height", crop))
        self.context_length = int(self.model.config.text_config.max_position_embeddings)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.context_length,
                              return_tensors="pt")["input_ids"]

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        features = _features(self.model.get_image_features(pixel_values=pixels.to(self._device())))
        return torch.nn.functional.normalize(features, dim=-1)

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        features = _features(self.model.get_text_features(input_ids=tokens.to(self._device())))
        return torch.nn.functional.normalize(features, dim=-1)

    def to(self, device: str | torch.device) -> HFClipAdapter:
        self.model.to(device)
        return self

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "family": "hf_transformers",
            "weights": {"sha256": self.sha256, "path": str(self.folder), **self.source},
            "image_size": self.image_size,
            "preprocess": self.processor.to_dict(),
            "tokenizer": {"name": type(self.tokenizer).__name__, "context_length": self.context_length},
        }
