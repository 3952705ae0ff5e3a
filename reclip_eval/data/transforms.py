"""Image preprocessing from a model's PreprocessConfig: resize (shorter side), centre crop, normalise."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import v2

from reclip_eval.models.config import PreprocessConfig

_INTERPOLATION = {"bicubic": v2.InterpolationMode.BICUBIC, "bilinear": v2.InterpolationMode.BILINEAR}


def image_transform(image_size: int, preprocess: PreprocessConfig) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> normalised float tensor (3, image_size, image_size), the same at training and evaluation.

    Training uses no crop augmentation: the paper's low-res phase only downsamples, and the synthetic captions
    name positions ("top left"), which crops and flips would falsify.
    """
    interpolation = _INTERPOLATION[preprocess.interpolation]
    resize = (
        v2.Resize(image_size, interpolation=interpolation, antialias=True)
        if preprocess.resize == "shortest"
        else v2.Resize((image_size, image_size), interpolation=interpolation, antialias=True)
    )
    return v2.Compose([
        v2.Lambda(_to_rgb),
        v2.ToImage(),
        resize,
        v2.CenterCrop(image_size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(preprocess.mean), std=list(preprocess.std)),
    ])


def _to_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def describe_transform(image_size: int, preprocess: PreprocessConfig) -> dict:
    """What a results JSON records about preprocessing, so a number can be reproduced."""
    return {
        "image_size": image_size,
        "resize": preprocess.resize,
        "crop": "center",
        "interpolation": preprocess.interpolation,
        "antialias": True,
        "mean": list(preprocess.mean),
        "std": list(preprocess.std),
    }
