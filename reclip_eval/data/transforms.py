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

    Training adds no augmentation unless a stage lists some (data/augment.py): the paper's low-res phase only
    downsamples, and the synthetic captions name positions ("top left"), which crops and flips would falsify.
    """
    return v2.Compose([
        v2.Lambda(to_rgb),
        v2.ToImage(),
        *resize_and_centre_crop(image_size, preprocess),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(preprocess.mean), std=list(preprocess.std)),
    ])


def interpolation_mode(preprocess: PreprocessConfig) -> v2.InterpolationMode:
    return _INTERPOLATION[preprocess.interpolation]


def resize_and_centre_crop(image_size: int, preprocess: PreprocessConfig) -> list[v2.Transform]:
    """The evaluation geometry: resize (the shorter side, or both sides) and centre crop to image_size."""
    interpolation = interpolation_mode(preprocess)
    size = image_size if preprocess.resize == "shortest" else (image_size, image_size)
    return [v2.Resize(size, interpolation=interpolation, antialias=True), v2.CenterCrop(image_size)]


def to_rgb(image: Image.Image) -> Image.Image:
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
