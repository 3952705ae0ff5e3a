"""Batched feature extraction with progress bars and corrupt images counted. Device and precision are the adapter's
(ModelAdapter.place): here only CPU batches go in and float32 numpy arrays come out, whatever the framework."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from reclip_eval.data.image_dataset import ImageListDataset, collate_skipping
from reclip_eval.distributed import is_main_process, map_sharded, worker_context
from reclip_eval.errors import DataError
from reclip_eval.zoo.adapter import ModelAdapter


@dataclass
class ImageFeatures:
    features: np.ndarray  # (N_ok, D) float32, L2-normalised
    targets: list[Any]
    indices: list[int]  # dataset indices of the rows of `features`
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (dataset index, reason)


def encode_image_dataset(
    adapter: ModelAdapter,
    dataset: ImageListDataset,
    *,
    batch_size: int,
    workers: int,
    desc: str = "images",
    describe: Callable[[Any], str] = str,
) -> ImageFeatures:
    """Encode every image; under torchrun each process takes a contiguous shard and the shards are gathered.
    `describe(source)` names an item in the error raised when not one image can be read."""

    def encode_shard(indices: Sequence[int], offset: int) -> ImageFeatures:
        loader = DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, num_workers=workers,
                            collate_fn=collate_skipping, pin_memory=adapter.pin_memory,
                            multiprocessing_context=worker_context() if workers else None)
        chunks, targets, kept, skipped = [], [], [], []
        with tqdm(total=len(indices), desc=desc, unit="img", leave=False, disable=not is_main_process()) as bar:
            for pixels, batch_targets, batch_indices, batch_skipped in loader:
                # Items carry their index in the full dataset (Subset passes it through to __getitem__).
                skipped.extend(batch_skipped)
                if batch_indices:
                    chunks.append(adapter.encode_images(pixels))
                    targets.extend(batch_targets)
                    kept.extend(batch_indices)
                bar.update(len(batch_indices) + len(batch_skipped))
        return ImageFeatures(_concatenate(chunks), targets, kept, skipped)

    parts = map_sharded(range(len(dataset)), encode_shard)
    encoded = ImageFeatures(
        _concatenate([p.features for p in parts]),
        [t for p in parts for t in p.targets],
        [i for p in parts for i in p.indices],
        [s for p in parts for s in p.skipped],
    )
    if not encoded.indices:
        # Skipping is for the odd bad file; with every one bad there is no metric, only a wrong folder or format.
        index, reason = encoded.skipped[0] if encoded.skipped else (None, "the dataset is empty")
        first = f"; the first, {describe(dataset.items[index][0])}: {reason}" if index is not None else f": {reason}"
        raise DataError(f"{desc}: none of the {len(dataset)} images could be read{first}")
    return encoded


def encode_texts(adapter: ModelAdapter, texts: list[str], *, batch_size: int, desc: str = "texts") -> np.ndarray:
    """(N_texts, D) float32, L2-normalised; sharded across processes under torchrun."""

    def encode_shard(shard: Sequence[str], offset: int) -> np.ndarray:
        steps = range(0, len(shard), batch_size)
        return _concatenate([adapter.encode_texts(list(shard[start:start + batch_size]))
                             for start in tqdm(steps, desc=desc, leave=False,
                                               disable=len(steps) <= 1 or not is_main_process())])

    return _concatenate(map_sharded(texts, encode_shard))


def _concatenate(chunks: list[np.ndarray]) -> np.ndarray:
    """The rows of every non-empty chunk in order; (0, 0) when there are none (an empty shard, say)."""
    chunks = [np.asarray(c, dtype=np.float32) for c in chunks if c.size]
    return np.concatenate(chunks) if chunks else np.empty((0, 0), dtype=np.float32)
