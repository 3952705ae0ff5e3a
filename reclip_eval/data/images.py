"""Image files: which suffixes are read, what a bad file raises, and opening one. The dataset over them that survives
corrupt files is data/image_dataset.py (torch); this module imports no torch, so listing a folder needs none."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from PIL import Image, UnidentifiedImageError

from reclip_eval.data.decode import apply_draft

# The formats read (all through PIL). A GIF or a multi-page TIFF gives its first frame; the transform makes it RGB.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# What a bad image file raises while opening or decoding (DecompressionBombError: a pixel-count bomb).
IMAGE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


class NotAnImageError(ValueError):
    """A file found in an image folder whose suffix is not one of IMAGE_SUFFIXES: listed as skipped, never opened."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def open_image(source: Path | IO[bytes], draft: int | None = None) -> Image.Image:
    """The decoded image in a file (whatever its name: an annotation file named it) or a binary stream. With
    `draft`, a JPEG is decoded at a reduced scale keeping both sides >= 1.25 x `draft` (data/decode.py, opt-in)."""
    image = apply_draft(Image.open(source), draft)
    image.load()  # decode now: a truncated file fails here, not later in the transform
    return image


def open_found_image(path: Path, draft: int | None = None) -> Image.Image:
    """A file found by listing an image folder: only the IMAGE_SUFFIXES formats are opened, so that any other file
    there is skipped with its reason (and so counted in the denominator) instead of vanishing from it."""
    if not is_image_file(path):
        raise NotAnImageError(f"not an image: suffix {path.suffix or '(none)'!r} is not one of "
                              f"{' '.join(IMAGE_SUFFIXES)}")
    return open_image(path, draft)
