"""How images are decoded: in full (the default, exact), or JPEG reduced-scale decoding (`draft`, opt-in).

libjpeg can decode a JPEG at 1/2, 1/4 or 1/8 of its size by scaling the DCT, which costs a fraction of a full
decode; PIL exposes it as `Image.draft`. The image is decoded at the largest reduction that keeps both sides >=
MARGIN x the model's input side (so only where the input is well under half the stored short side), and the usual
antialiased resize and centre crop then run on that smaller image. The margin leaves part of the reduction to that
resize: decoded straight to the input side (no margin), the bundled demo's 128 px JPEGs at 64 px lost 10.4 points
of top-1 (85.28 -> 74.86); with it they are decoded in full, and 500x375 photos at 64 px still decode at 1/4. The result is close to, not equal to, the full decode (the DCT scaling
filters differently from the antialiased resize), so it is opt-in and recorded in the results (docs/compute.md
states its measured effect). Other formats (PNG, WebP, ...) have no such decoder and are decoded in full.

This module imports no torch: the loaders (data/images.py) use it in DataLoader workers and in listings.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from PIL import Image

DECODES = ("full", "draft")  # full: exact; draft: JPEG reduced-scale decoding, approximate
MARGIN = 1.25  # both decoded sides >= MARGIN x the side asked for (module docstring)

_modes: list[str] = []  # the decode of the evaluation running now (runner.evaluate opens `decoding`)


def check_decode(decode: str, where: str = "decode") -> str:
    if decode not in DECODES:
        raise ValueError(f"{where}: expected one of {', '.join(DECODES)}, got {decode!r}")
    return decode


@contextmanager
def decoding(decode: str) -> Iterator[None]:
    """While open, image datasets encoded for evaluation (eval/features.py) decode as `decode` says."""
    _modes.append(check_decode(decode))
    try:
        yield
    finally:
        _modes.pop()


def current_decode() -> str:
    return _modes[-1] if _modes else "full"


def draft_side(image_sizes: Sequence[int | Sequence[int]]) -> int | None:
    """The side to ask the JPEG decoder for when every size in `image_sizes` (one side, or [height, width]) is
    to be made from one decode: the largest of them, so no size is made by upsampling. None with decode 'full'."""
    if current_decode() != "draft":
        return None
    return max(max(size) if isinstance(size, (list, tuple)) else int(size) for size in image_sizes)


def apply_draft(image: Image.Image, side: int | None) -> Image.Image:
    """Before an opened image is loaded: ask a JPEG's decoder for a reduced scale whose both sides stay >= MARGIN x
    `side` (PIL picks 1/2, 1/4 or 1/8, or none when the short side is under 2 x that). The mode is kept as stored,
    so only the scale changes; any other format is left alone. Returns `image` (to be loaded by the caller)."""
    if side is not None and image.format == "JPEG":
        wanted = math.ceil(MARGIN * side)
        image.draft(image.mode, (wanted, wanted))
    return image
