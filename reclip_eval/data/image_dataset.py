"""A dataset over (image path, target) pairs that survives corrupt files: they are reported, not fatal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from reclip_eval.data.images import IMAGE_ERRORS, open_image


class ImageListDataset(Dataset):
    """Item i -> (pixels or None, target, i, error or None). Load errors become a reason string, not an exception.

    `items` are (source, target) pairs; `load(source)` gives the PIL image (default: open a file path). With
    `draft` (opt-in, data/decode.py), `load(source, draft=draft)`: a JPEG decoded at a reduced scale.
    """

    def __init__(self, items: list[tuple[Any, Any]], transform: Callable[[Image.Image], torch.Tensor],
                 load: Callable[[Any], Image.Image] = open_image, draft: int | None = None):
        self.items = items
        self.transform = transform
        self.load = load
        self.draft = draft

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        source, target = self.items[index]
        try:
            image = self.load(source) if self.draft is None else self.load(source, draft=self.draft)
            pixels = self.transform(image)
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
