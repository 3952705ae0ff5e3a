"""Training batches from webdataset shards (`NNNN.jpg` + `NNNN.txt` in .tar files, the img2dataset convention)."""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from PIL import Image

from reclip_eval.errors import DataError

_REMOTE = ("http://", "https://", "pipe:", "s3://", "gs://")


def list_shards(spec: str, root: Path | None) -> list[str]:
    """Expand a shard spec: a folder of .tar files, a glob, brace notation, or remote URLs (kept as given)."""
    import braceexpand

    if spec.startswith(_REMOTE):
        return list(braceexpand.braceexpand(spec))
    base = Path(spec) if Path(spec).is_absolute() or root is None else root / spec
    if base.is_dir():
        shards = sorted(str(p) for p in base.glob("*.tar"))
    else:
        shards = []
        for pattern in braceexpand.braceexpand(str(base)):
            shards.extend(sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern])
        shards = [s for s in shards if Path(s).is_file()]
    if not shards:
        raise DataError(f"no training shards found for {spec!r} (looked in {base}); expected .tar files holding "
                        "NNNN.jpg + NNNN.txt pairs (webdataset / img2dataset layout)")
    return shards


def _collate(tokenize: Callable[[list[str]], torch.Tensor]):
    def collate(samples: list[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = torch.stack([s[0] for s in samples])
        return pixels, tokenize([s[1] for s in samples])

    return collate


def _decode_text(data: bytes | str) -> str:
    return data.decode("utf-8") if isinstance(data, bytes) else data


def _skip_samples(samples: Iterator, count: int) -> Iterator:
    """Drop the first `count` samples (before decoding, so skipping costs reading, not JPEG decoding)."""
    for index, sample in enumerate(samples):
        if index >= count:
            yield sample


def train_batches(
    shards: list[str],
    transform: Callable[[Image.Image], torch.Tensor],
    tokenize: Callable[[list[str]], torch.Tensor],
    *,
    batch_size: int,
    seed: int,
    shuffle_buffer: int = 2000,
    workers: int = 2,
    skip_batches: int = 0,
    pin_memory: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless, seeded stream of (pixels (B,3,S,S), tokens (B,L)): shards drawn with replacement, samples
    shuffled in a buffer. The stream is the same for the same seed and number of workers.

    `pin_memory=True` (for a CUDA device) hands out page-locked batches, so `.to(device, non_blocking=True)` copies
    overlap with compute. `skip_batches=k` starts at batch k of that stream (for exact resume). The DataLoader takes batches from its
    workers in turn, so batch k is round k // W of worker k % W: every worker skips k // W batches' samples
    before decoding, and the k % W batches that remain before batch k are drawn and dropped.
    """
    import functools

    import webdataset as wds

    rounds, remainder = divmod(skip_batches, max(1, workers))
    pipeline = wds.DataPipeline(
        wds.ResampledShards(shards, seed=seed, deterministic=True),
        wds.tarfile_to_samples(handler=wds.warn_and_continue),
        wds.detshuffle(shuffle_buffer, initial=min(shuffle_buffer, 500), seed=seed),
        functools.partial(_skip_samples, count=rounds * batch_size),
        wds.decode("pil", handler=wds.warn_and_continue),
        wds.to_tuple("jpg;jpeg;png;webp", "txt", handler=wds.warn_and_continue),
        wds.map_tuple(transform, _decode_text, handler=wds.warn_and_continue),
        wds.batched(batch_size, collation_fn=_collate(tokenize), partial=False),
    )
    loader = wds.WebLoader(pipeline, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                           persistent_workers=False, prefetch_factor=4 if workers else None)
    batches = iter(loader)
    for _ in range(remainder):
        next(batches)
    return batches
