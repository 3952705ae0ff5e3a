"""A dataset over (image path, target) pairs that survives corrupt files: they are reported, not fatal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

# The formats read (all through PIL). A GIF or a multi-page TIFF gives its first frame; the transform makes it RGB.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# What a bad image file raises while opening or decoding (DecompressionBombError: a pixel-count bomb).
IMAGE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


class NotAnImageError(ValueError):
    """A file found in an image folder whose suffix is not one of IMAGE_SUFFIXES: listed as skipped, never opened."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def open_image(source: Path | IO[bytes]) -> Image.Image:
    """The decoded image in a file (whatever its name: an annotation file named it) or a binary stream."""
    image = Image.open(source)
    image.load()  # decode now: a truncated file fails here, not later in the transform
    return image


def open_found_image(path: Path) -> Image.Image:
    """A file found by listing an image folder: only the IMAGE_SUFFIXES formats are opened, so that any other file
    there is skipped with its reason (and so counted in the denominator) instead of vanishing from it."""
    if not is_image_file(path):
        raise NotAnImageError(f"not an image: suffix {path.suffix or '(none)'!r} is not one of "
                              f"{' '.join(IMAGE_SUFFIXES)}")
    return open_image(path)


class ImageListDataset(Dataset):
    """Item i -> (pixels or None, target, i, error or None). Load errors become a reason string, not an exception.

    `items` are (source, target) pairs; `load(source)` gives the PIL image (default: open a file path).
    """

    def __init__(self, items: list[tuple[Any, Any]], transform: Callable[[Image.Image], torch.Tensor],
                 load: Callable[[Any], Image.Image] = open_image):
        self.items = items
        self.transform = transform
        self.load = load

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        source, target = self.items[index]
        try:
            pixels = self.transform(self.load(source))
        except IMAGE_ERRORS as e:
            return None, target, index, f"{type(e).__name__}: {e}"
        return pixels, target, index, None


def collate_skipping(batch):
    """Stack the good items; return (pixels, targets, indices, skipped) with skipped = [(index, reason)]."""
    good = [b for b in batch if b[0] is not None]
    skipped = [(b[2], b[3]) for b in batch if b[0] is None]
    if good:
        pixels = torch.stack([torch.as_tensor(b[0]) for b in good])  # a non-torch family's transform may give numpy
    else:
        pixels = torch.empty(0)
    targets = [b[1] for b in good]
    indices = [b[2] for b in good]
    return pixels, targets, indices, skipped
