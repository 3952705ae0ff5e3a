"""Batched feature extraction with progress bars and corrupt images counted. Device and precision are the adapter's
(ModelAdapter.place): here only CPU batches go in and float32 numpy arrays come out, whatever the framework.

A resolution sweep (`image_sweep`: one model per image size) decodes each image once: the first size to encode a
dataset encodes it for every size in the same pass (each decoded image transformed at every size, exactly as each
size's own pass would), and the other sizes' features wait for their turn (features only: memory stays bounded)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from reclip_eval.data.decode import draft_side
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


@dataclass
class _Sweep:
    adapters: list[ModelAdapter]  # one per image size
    # (adapter, the images) -> its features, encoded in an earlier size's pass, until that size asks for them
    waiting: dict[tuple[int, tuple], ImageFeatures] = field(default_factory=dict)


_sweeps: list[_Sweep] = []


@contextmanager
def image_sweep(adapters: Sequence[ModelAdapter]) -> Iterator[None]:
    """While open (`adapters` evaluated in this order, one per image size), a dataset that one of them encodes with
    its own transform is encoded by it and every later one in one pass over the images (each decoded once); a later
    one gets those features when it encodes the same dataset."""
    _sweeps.append(_Sweep(list(adapters)))
    try:
        yield
    finally:
        _sweeps.pop()


class _EverySize:
    """PIL image -> one array per transform: the same decoded image transformed for every size of a sweep."""

    def __init__(self, transforms: list[Callable]):
        self.transforms = transforms

    def __call__(self, image) -> list[Any]:
        return [transform(image) for transform in self.transforms]


def _collate_every_size(batch):
    """`collate_skipping` per size: [(pixels, targets, indices, skipped)] in the sweep's order."""
    sizes = len(next((b[0] for b in batch if b[0] is not None), [None]))
    return [collate_skipping([(b[0][i] if b[0] is not None else None, *b[1:]) for b in batch]) for i in range(sizes)]


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
    `describe(source)` names an item in the error raised when not one image can be read. In an `image_sweep`, the
    sweep's other adapters' features of the same images are computed in the same pass (or were, and are returned)."""
    sweep = _sweeps[-1] if _sweeps and dataset.transform is adapter.transform else None
    # The images are named by the task's description and their sources (paths, archive members).
    images = (desc, tuple(source for source, _ in dataset.items)) if sweep is not None else ()
    adapters = [adapter]
    place = next((i for i, a in enumerate(sweep.adapters) if a is adapter), None) if sweep is not None else None
    if place is not None and _hashable(images):
        waiting = sweep.waiting.pop((id(adapter), images), None)
        if waiting is not None:
            return waiting
        # The sizes still to come (evaluated in the sweep's order) take their features from this pass.
        adapters += [a for a in sweep.adapters[place + 1:] if (id(a), images) not in sweep.waiting]
    # With the opt-in reduced-scale decoding (data/decode.py), JPEGs are decoded for the largest size encoded here.
    draft = draft_side([a.image_size for a in adapters])
    if len(adapters) > 1 or draft is not None:
        transform = _EverySize([a.transform for a in adapters]) if len(adapters) > 1 else dataset.transform
        dataset = ImageListDataset(dataset.items, transform, load=dataset.load, draft=draft)

    def encode_shard(indices: Sequence[int], offset: int) -> list[ImageFeatures]:
        loader = DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, num_workers=workers,
                            collate_fn=_collate_every_size if len(adapters) > 1 else collate_skipping,
                            pin_memory=adapter.pin_memory,
                            multiprocessing_context=worker_context() if workers else None)
        chunks, targets, kept, skipped = [[] for _ in adapters], [], [], []
        with tqdm(total=len(indices), desc=desc, unit="img", leave=False, disable=not is_main_process()) as bar:
            for batch in loader:
                per_size = batch if len(adapters) > 1 else [batch]
                _, batch_targets, batch_indices, batch_skipped = per_size[0]
                # Items carry their index in the full dataset (Subset passes it through to __getitem__).
                skipped.extend(batch_skipped)
                if batch_indices:
                    for size_chunks, model, (pixels, *_) in zip(chunks, adapters, per_size, strict=True):
                        size_chunks.append(model.encode_images(pixels))
                    targets.extend(batch_targets)
                    kept.extend(batch_indices)
                bar.update(len(batch_indices) + len(batch_skipped))
        return [ImageFeatures(_concatenate(c), targets, kept, skipped) for c in chunks]

    parts = map_sharded(range(len(dataset)), encode_shard)
    every = [ImageFeatures(
        _concatenate([p[k].features for p in parts]),
        [t for p in parts for t in p[k].targets],
        [i for p in parts for i in p[k].indices],
        [s for p in parts for s in p[k].skipped],
    ) for k in range(len(adapters))]
    encoded = every[0]
    for other, features in zip(adapters[1:], every[1:], strict=True):
        sweep.waiting[(id(other), images)] = features
    if not encoded.indices:
        # Skipping is for the odd bad file; with every one bad there is no metric, only a wrong folder or format.
        index, reason = encoded.skipped[0] if encoded.skipped else (None, "the dataset is empty")
        first = f"; the first, {describe(dataset.items[index][0])}: {reason}" if index is not None else f": {reason}"
        raise DataError(f"{desc}: none of the {len(dataset)} images could be read{first}")
    return encoded


def encode_texts(adapter: ModelAdapter, texts: list[str], *, batch_size: int, desc: str = "texts") -> np.ndarray:
    """(N_texts, D) float32, L2-normalised, in the order of `texts`; sharded across processes under torchrun.

    The texts are batched in order of length (characters, a proxy for tokens), and the rows put back in order
    after: a text tower whose batches are cut at their longest prompt (zoo/torch_adapter.py) then computes little
    padding, since each batch holds prompts of about one length. Each row depends only on its own text."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    ordered = [texts[i] for i in order]

    def encode_shard(shard: Sequence[str], offset: int) -> np.ndarray:
        steps = range(0, len(shard), batch_size)
        return _concatenate([adapter.encode_texts(list(shard[start:start + batch_size]))
                             for start in tqdm(steps, desc=desc, leave=False,
                                               disable=len(steps) <= 1 or not is_main_process())])

    encoded = _concatenate(map_sharded(ordered, encode_shard))
    if len(encoded) != len(texts):  # (0, 0): nothing to put back
        return encoded
    rows = np.empty_like(encoded)
    rows[order] = encoded
    return rows


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:  # a source that is not a path or a name (then the sweep's sizes each read the images)
        return False
    return True


def _concatenate(chunks: list[np.ndarray]) -> np.ndarray:
    """The rows of every non-empty chunk in order; (0, 0) when there are none (an empty shard, say)."""
    chunks = [np.asarray(c, dtype=np.float32) for c in chunks if c.size]
    return np.concatenate(chunks) if chunks else np.empty((0, 0), dtype=np.float32)
