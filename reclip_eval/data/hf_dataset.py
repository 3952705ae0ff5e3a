"""Classification data in the Hugging Face `datasets` form: a local `save_to_disk` directory, or a Hub dataset id
(which needs the network, or the datasets cache with HF_DATASETS_OFFLINE=1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from reclip_eval.errors import DataError


def load_hf_split(source: str, split: str):
    import datasets

    path = Path(source).expanduser()
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DataError(f"{path}: no split {split!r} (has {', '.join(loaded)})")
            loaded = loaded[split]
        return loaded
    try:
        return datasets.load_dataset(source, split=split)
    except (ConnectionError, OSError, ValueError) as e:
        raise DataError(
            f"Hugging Face dataset {source!r} could not be loaded ({type(e).__name__}: {e}); a Hub id needs the "
            "network or a prior download in the datasets cache (HF_DATASETS_OFFLINE=1 then reads the cache)"
        ) from None


def hf_items(dataset, image_column: str, label_column: str, num_classes: int) -> list[tuple[int, int]]:
    """(row index, label) pairs; labels must already be in the task's class order (as for `imagenet-1k`)."""
    missing = [c for c in (image_column, label_column) if c not in dataset.column_names]
    if missing:
        raise DataError(f"dataset has no column(s) {missing}; columns: {dataset.column_names}")
    labels = dataset[label_column]
    bad = [label for label in set(labels) if not 0 <= int(label) < num_classes]
    if bad:
        raise DataError(f"dataset labels {sorted(bad)[:5]} are outside the task's {num_classes} classes")
    return [(i, int(label)) for i, label in enumerate(labels)]


class HFImageLoader:
    """Picklable `load(row index) -> PIL image` for ImageListDataset (DataLoader workers reopen the dataset)."""

    def __init__(self, dataset, image_column: str):
        self.dataset = dataset
        self.image_column = image_column

    def __call__(self, index: Any) -> Image.Image:
        image = self.dataset[int(index)][self.image_column]
        if not isinstance(image, Image.Image):
            raise ValueError(f"row {index}: column {self.image_column!r} is not an image")
        return image
