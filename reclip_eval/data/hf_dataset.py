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
        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as e:  # noqa: BLE001  datasets raises many types on a folder it did not write
            reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise DataError(f"{path}: not a dataset saved with datasets' save_to_disk ({type(e).__name__}: "
                            f"{reason[:200]})") from None
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DataError(f"{path}: no split {split!r} (has {', '.join(loaded)})")
            loaded = loaded[split]
        # A data file listed twice in the folder's state.json would list each of its images (and labels) twice.
        files = [Path(f.get("filename", "")).name for f in loaded.cache_files]
        repeated = sorted({name for name in files if files.count(name) > 1})
        if repeated:
            raise DataError(f"{path}: split {split!r} lists the data file {repeated[0]} {files.count(repeated[0])} "
                            "times (its state.json's _data_files), so each of its images would be counted again; "
                            "expected each file once")
        return loaded
    try:
        return datasets.load_dataset(source, split=split)
    except (ConnectionError, OSError, ValueError) as e:
        raise DataError(
            f"Hugging Face dataset {source!r} could not be loaded ({type(e).__name__}: {e}); a Hub id needs the "
            "network or a prior download in the datasets cache (HF_DATASETS_OFFLINE=1 then reads the cache)"
        ) from None


def hf_items(dataset, image_column: str, label_column: str, num_classes: int, source: str = "dataset"
             ) -> list[tuple[int, int]]:
    """(row index, label) pairs; labels must already be in the task's class order (as for `imagenet-1k`): a
    ClassLabel column with another number of names is another class list, refused rather than read as ours."""
    import datasets

    missing = [c for c in (image_column, label_column) if c not in dataset.column_names]
    if missing:
        raise DataError(f"{source}: no column(s) {missing}; columns: {dataset.column_names}")
    feature = dataset.features[label_column]
    if isinstance(feature, datasets.ClassLabel) and feature.num_classes != num_classes:
        raise DataError(f"{source}: column {label_column!r} is a ClassLabel of {feature.num_classes} names "
                        f"(e.g. {feature.names[:3]}); the task has {num_classes} classes, so its labels are not the "
                        "task's")
    labels = dataset[label_column]
    not_integers = [label for label in labels if not isinstance(label, int) or isinstance(label, bool)]
    if not_integers:
        raise DataError(f"{source}: column {label_column!r} holds {not_integers[0]!r}; expected integer labels "
                        f"0..{num_classes - 1} in the task's class order")
    bad = sorted({label for label in labels if not 0 <= label < num_classes})
    if bad:
        raise DataError(f"{source}: labels {bad[:5]} are outside the task's {num_classes} classes")
    return list(enumerate(labels))


class HFImageLoader:
    """Picklable `load(row index) -> PIL image` for ImageListDataset (DataLoader workers reopen the dataset)."""

    def __init__(self, dataset, image_column: str):
        self.dataset = dataset
        self.image_column = image_column

    def __call__(self, index: Any, draft: int | None = None) -> Image.Image:
        # `draft` cannot apply: the datasets library hands the image over decoded (docs/compute.md says so).
        image = self.dataset[int(index)][self.image_column]
        if not isinstance(image, Image.Image):
            raise ValueError(f"row {index}: column {self.image_column!r} is not an image")
        return image
