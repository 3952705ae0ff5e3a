"""The small interface every evaluated model family implements (ours, open_clip, HF transformers, detectors).

Evaluation code sees only this: a tokenizer, an image transform, two encoders returning L2-normalised
embeddings, and a description of exactly which weights and preprocessing were used (for the results JSON).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image


class ModelAdapter(ABC):
    model_id: str
    image_size: int
    transform: Callable[[Image.Image], torch.Tensor]

    @abstractmethod
    def tokenize(self, texts: list[str]) -> torch.Tensor: ...

    @abstractmethod
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) preprocessed -> (B, D), L2-normalised."""

    @abstractmethod
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, D), L2-normalised."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Model id, family, weights (sha256, Hub repo/commit), preprocessing and tokenizer, for the results JSON."""

    @abstractmethod
    def to(self, device: str | torch.device) -> ModelAdapter: ...

    def text_config(self) -> dict[str, Any]:
        """Everything besides the weights that decides a text embedding (the class-embedding cache is keyed on it).
        Here what `describe` says of the family, architecture and tokenizer; a family whose text tower is configured
        beside its weights adds that configuration."""
        described = self.describe()
        return {key: described.get(key) for key in ("family", "architecture", "tokenizer")}
