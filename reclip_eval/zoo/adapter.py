"""The small interface every evaluated model family implements (ours, open_clip, HF transformers, detectors), whatever
framework computes its embeddings.

Evaluation code sees only this: an image transform, two encoders returning L2-normalised float32 numpy arrays, a
placement (device and precision, which live in the adapter, not in the evaluation code), an optional FLOP count,
and a description of exactly which weights and preprocessing were used (for the results JSON). The torch families
share their plumbing in zoo/torch_adapter.py; a family on another framework (flax, say) implements this class
directly and never meets a torch tensor besides the DataLoader's CPU batches, which `np.asarray` reads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from reclip_eval.device import PRECISIONS


class ModelAdapter(ABC):
    model_id: str
    image_size: int
    # PIL image -> a (3, H, W) CPU array the evaluation DataLoader batches (a torch tensor: its collate stacks them).
    transform: Callable[[Image.Image], Any]
    device: str = "cpu"
    precision: str = "fp32"

    @abstractmethod
    def encode_images(self, pixels: Any) -> np.ndarray:
        """A batch as the DataLoader yields it ((B, 3, H, W) on the CPU: a torch tensor or a numpy array) ->
        (B, D) float32, L2-normalised, computed on the adapter's device at its precision."""

    @abstractmethod
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Texts -> (N, D) float32, L2-normalised; tokenization is the family's own."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Model id, family, weights (sha256, Hub repo/commit), preprocessing and tokenizer, for the results JSON."""

    def place(self, device: str, precision: str = "fp32") -> ModelAdapter:
        """Run the encoders on `device` ("cpu", "cuda", "cuda:1", ...) at `precision` (fp32, or bf16 autocast).
        A family that moves weights overrides this and calls it first (it checks and records both)."""
        if precision not in PRECISIONS:
            raise ValueError(f"{self.model_id}: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.device, self.precision = device, precision
        return self

    @property
    def pin_memory(self) -> bool:
        """Whether the evaluation DataLoader should put its batches in page-locked memory (a faster copy to a GPU)."""
        return False

    def image_gmacs(self) -> float | None:
        """GMACs (FLOPs / 2) of encoding one image at `image_size`, for the results JSON; None where the family
        has no FLOP counter."""
        return None

    def text_config(self) -> dict[str, Any]:
        """Everything besides the weights that decides a text embedding (the class-embedding cache is keyed on it).
        Here what `describe` says of the family, architecture and tokenizer; a family whose text tower is configured
        beside its weights adds that configuration."""
        described = self.describe()
        return {key: described.get(key) for key in ("family", "architecture", "tokenizer")}
