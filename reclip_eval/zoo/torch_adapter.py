"""The torch plumbing the torch families share (ours, open_clip, HF transformers, the detector): the device transfer,
the one autocast (reclip_eval.device.autocast), no_grad, the tokenizer call and the copy back to float32 numpy.

A family implements only its forward, `embed_pixels` and `embed_tokens` (tensors on the adapter's device in,
L2-normalised embeddings out), and names the modules that `place` moves. Peer comparisons that hand a torch model to
another library (CLIP_benchmark) use those two directly, beside `tokenize`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from reclip_eval.device import autocast
from reclip_eval.zoo.adapter import ModelAdapter

if TYPE_CHECKING:  # imported on use: the kinds register themselves (listings) without torch
    import torch


class TorchAdapter(ModelAdapter):
    tokenizer: Callable[[list[str]], torch.Tensor]
    # Text batches are cut at `decisive_text_length` (an exact speedup: prompts are padded to the context length,
    # 77, and most are under 20 tokens). Off only to compare with the uncut forward (tests, benchmarks/text_cut.py).
    cut_text_padding: bool = True

    @abstractmethod
    def placed_modules(self) -> list[torch.nn.Module]:
        """The modules `place` moves to the device."""

    @abstractmethod
    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) preprocessed, on the adapter's device -> (B, D), L2-normalised."""

    @abstractmethod
    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids, on the adapter's device -> (B, D), L2-normalised."""

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    def decisive_text_length(self, tokens: torch.Tensor) -> int | None:
        """How many leading positions of a tokenized batch decide every row's embedding, where the family's text
        tower makes that exact (causal attention pooled at one token: the padding after it cannot reach it). None
        (the default, and any tower that is not causal or pools over every position): the batch is not cut."""
        return None

    def text_tokens(self, texts: list[str]) -> torch.Tensor:
        """The tokenized batch as the text tower runs it: cut at `decisive_text_length` (when on), on the CPU."""
        tokens = self.tokenize(list(texts))
        length = self.decisive_text_length(tokens) if self.cut_text_padding else None
        return tokens[:, :length] if length is not None and length < tokens.shape[1] else tokens

    def place(self, device: str, precision: str = "fp32") -> TorchAdapter:
        super().place(device, precision)
        for module in self.placed_modules():
            module.to(device)
        return self

    @property
    def pin_memory(self) -> bool:
        import torch

        return torch.device(self.device).type == "cuda"

    @contextmanager
    def running(self) -> Iterator[None]:
        """No gradients, the placed precision's autocast: how every forward of the adapter runs."""
        import torch

        with torch.no_grad(), autocast(self.device, self.precision):
            yield

    def encode_images(self, pixels: Any) -> np.ndarray:
        import torch

        pixels = torch.as_tensor(pixels).to(self.device, non_blocking=True)
        with self.running():
            return _as_numpy(self.embed_pixels(pixels))

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.text_tokens(texts).to(self.device)
        with self.running():
            return _as_numpy(self.embed_tokens(tokens))

    def image_gmacs(self) -> float:
        """Counted by torch's FLOP counter on one blank image, in float32 (the count does not depend on dtype)."""
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        pixels = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            self.embed_pixels(pixels)
        return round(counter.get_total_flops() / 2e9, 6)


def _as_numpy(features: torch.Tensor) -> np.ndarray:
    return features.float().cpu().numpy()
