"""Compute per sample, counted by torch's FLOP counter on the real model definition (on the meta device, so even
ViT-L costs nothing to count). Reported as GMACs (multiply-accumulates = FLOPs / 2), the convention of the
paper's Table 2: only matrix products count (linear layers, patch embedding, attention), not norms or softmax.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from reclip_eval.models.clip import CLIP
from reclip_eval.models.config import CLIPConfig, ImageSize
from reclip_eval.models.presets import with_image_size
from reclip_eval.models.token_reduction import ImageTokens


@dataclass(frozen=True)
class SampleCompute:
    image_size: ImageSize
    text_length: int
    image_gmacs: float
    text_gmacs: float
    image_tokens: int  # tokens through the image tower (patches kept, plus the class token if any)

    @property
    def total_gmacs(self) -> float:
        return self.image_gmacs + self.text_gmacs


def gmacs_of(fn) -> float:
    """GMACs of the matrix products `fn()` runs."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2 / 1e9


def count_sample_compute(config: CLIPConfig, image_size: ImageSize, text_length: int,
                         image_tokens: ImageTokens | None = None) -> SampleCompute:
    """Forward GMACs for one image-text pair at `image_size` px (an int, or (height, width)) and `text_length`
    tokens, with the patch tokens `image_tokens` keeps (masking runs the same `select_image_tokens` the model
    trains with, so a masked stage counts what it computes)."""
    config = with_image_size(config, image_size)
    if text_length > config.text.context_length:  # counting only: a longer position table costs no MACs
        config = dataclasses.replace(config, text=dataclasses.replace(config.text, context_length=text_length))
    with torch.device("meta"):
        model = CLIP(config)
        pixels = torch.zeros(1, 3, *config.vision.image_hw)
        tokens = torch.zeros(1, text_length, dtype=torch.long)
    with torch.no_grad():
        image = gmacs_of(lambda: model.encode_image(pixels, image_tokens=image_tokens))
        text = gmacs_of(lambda: model.encode_text(tokens))
    kept = (image_tokens or ImageTokens()).kept(config.vision.grid_hw)
    return SampleCompute(image_size, text_length, image, text, kept + config.vision.num_prefix_tokens)
