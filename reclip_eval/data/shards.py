"""Training batches from webdataset shards (`NNNN.jpg` + `NNNN.txt` in .tar files, the img2dataset convention)."""

from __future__ import annotations

import glob
import io
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from reclip_eval.data.images import IMAGE_ERRORS, IMAGE_SUFFIXES, open_image
from reclip_eval.distributed import worker_context
from reclip_eval.errors import DataError
from reclip_eval.models.token_reduction import derive_seed

log = logging.getLogger(__name__)

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


IMAGE_MEMBERS = tuple(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)  # in order of preference
TEXT_MEMBER = "txt"
# img2dataset writes a .json of metadata beside every pair: not decoded either, but expected, so not warned about.
METADATA_MEMBERS = ("json",)
POSITION_KEY = "__position__"  # a sample's raw index in its worker's stream (webdataset's own keys start with __ too)


@dataclass
class ShardCounts:
    """What the stream left out: members never decoded (by extension) and samples dropped (by reason)."""

    members_ignored: Counter[str] = field(default_factory=Counter)
    samples_dropped: Counter[str] = field(default_factory=Counter)

    def update(self, other: ShardCounts) -> None:
        self.members_ignored.update(other.members_ignored)
        self.samples_dropped.update(other.samples_dropped)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"members_ignored": dict(sorted(self.members_ignored.items())),
                "samples_dropped": dict(sorted(self.samples_dropped.items()))}

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, int]] | None) -> ShardCounts:
        data = data or {}
        return cls(Counter(data.get("members_ignored", {})), Counter(data.get("samples_dropped", {})))


def augment_seed(seed: int, worker: int, position: int) -> int:
    """The seed of one sample's augmentation: a function of the stream's seed and the sample's place in its worker's
    stream, so a resumed stream (which skips samples without decoding them) augments each sample as before."""
    return derive_seed(seed, worker, position)


def _decode_samples(samples: Iterator[dict], transform: Callable[..., torch.Tensor], seed: int | None = None,
                    draft: int | None = None) -> Iterator[tuple[torch.Tensor, str, ShardCounts]]:
    """(pixels, caption, what was left out since the previous sample). Only the first image member (PIL) and the
    .txt member (UTF-8) are decoded, by us: webdataset's default decoders unpickle .pyd/.pickle members, and a shard
    is data, never code. Everything else is counted by extension and never read further.

    With a `seed`, `transform(image, augment_seed(seed, worker, position))` (a stage's augmentation). With `draft`
    (the recipe's `data.decode: draft`), a JPEG is decoded at a reduced scale keeping both sides >= `draft`."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    worker = info.id if info is not None else 0
    pending = ShardCounts()
    for sample in samples:
        members = [key for key in sample if not key.startswith("__")]  # __key__, __url__: webdataset bookkeeping
        image_key = next((ext for ext in IMAGE_MEMBERS if ext in members), None)
        pending.members_ignored.update(key for key in members if key not in (image_key, TEXT_MEMBER))
        if image_key is None or TEXT_MEMBER not in members:
            pending.samples_dropped["no image" if image_key is None else "no caption"] += 1
            continue
        try:
            caption = sample[TEXT_MEMBER].decode("utf-8")
        except UnicodeDecodeError:
            pending.samples_dropped["caption not UTF-8"] += 1
            continue
        if not caption.strip():
            pending.samples_dropped["empty caption"] += 1
            continue
        try:
            image = open_image(io.BytesIO(sample[image_key]), draft)
            pixels = transform(image) if seed is None else \
                transform(image, augment_seed(seed, worker, sample[POSITION_KEY]))
        except IMAGE_ERRORS:
            pending.samples_dropped["unreadable image"] += 1
            continue
        yield pixels, caption, pending
        pending = ShardCounts()


def _collate(samples: list[tuple[torch.Tensor, str, ShardCounts]], tokenize: Callable[[list[str]], torch.Tensor]
             ) -> tuple[torch.Tensor, torch.Tensor, ShardCounts]:
    counts = ShardCounts()
    for sample in samples:
        counts.update(sample[2])
    return torch.stack([s[0] for s in samples]), tokenize([s[1] for s in samples]), counts


def _skip_samples(samples: Iterator, counts: list[int]) -> Iterator:
    """Drop the first `counts[w]` samples of worker w's stream (before decoding, so skipping costs reading, not
    JPEG decoding); the others carry their raw position in that stream (POSITION_KEY)."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    count = counts[info.id if info is not None else 0]
    for index, sample in enumerate(samples):
        if index >= count:
            yield {**sample, POSITION_KEY: index}


class StreamPositions:
    """Per loader worker, how many raw (undecoded) samples of its stream the batches handed out so far used.
    Dropped samples make this more than batches x batch size, which is why exact resume records it."""

    def __init__(self, starts: list[int], batch_size: int, handed_out: int):
        self._batch_size = batch_size
        self._handed_out = handed_out
        self._before_after = [(start, start) for start in starts]  # around each worker's latest batch

    def advance(self, counts: ShardCounts) -> None:
        # The DataLoader hands out its workers' batches in turn: batch k came from worker k % W.
        worker = self._handed_out % len(self._before_after)
        _, after = self._before_after[worker]
        self._before_after[worker] = (after, after + self._batch_size + sum(counts.samples_dropped.values()))
        self._handed_out += 1

    def at_last_round(self) -> list[int]:
        """The positions at the end of the last complete round of batches: what `train_batches(skip_batches=k,
        stream_positions=...)` skips to, to restart exactly at batch k (k = batches handed out so far)."""
        remainder = self._handed_out % len(self._before_after)
        return [before if worker < remainder else after
                for worker, (before, after) in enumerate(self._before_after)]


class TrainBatches:
    """The endless iterator of (pixels, tokens) batches; `counts` sums what the batches handed out so far left
    out (starting from `counts_so_far`, a resumed run's record), so it is exact whatever the number of workers;
    `stream_positions` is what a resume point records to restart the stream exactly."""

    def __init__(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor, ShardCounts]], positions: StreamPositions,
                 counts_so_far: dict[str, dict[str, int]] | None = None,
                 reduce_text: Callable[[torch.Tensor, int], torch.Tensor] | None = None, first_batch: int = 0):
        self._batches = batches
        self._positions = positions
        self._counts = ShardCounts.from_dict(counts_so_far)
        self._reported: set[str] = set()
        self._reduce_text = reduce_text
        self._next_batch = first_batch  # the index of the batch handed out next (the step it trains)

    def __iter__(self) -> TrainBatches:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        pixels, tokens, counts = next(self._batches)
        self._positions.advance(counts)
        self._counts.update(counts)
        self._report_new(counts)
        if self._reduce_text is not None:  # per-batch draws, keyed by the batch's index: the same after a resume
            tokens = self._reduce_text(tokens, self._next_batch)
        self._next_batch += 1
        return pixels, tokens

    def counts(self) -> dict[str, dict[str, int]]:
        return self._counts.as_dict()

    def stream_positions(self) -> list[int]:
        return self._positions.at_last_round()

    def _report_new(self, counts: ShardCounts) -> None:
        """Say once per kind what is being left out (the totals go to the training record)."""
        for ext in sorted(set(counts.members_ignored) - self._reported):
            self._reported.add(ext)
            level = logging.INFO if ext in METADATA_MEMBERS else logging.WARNING
            log.log(level, "shard members .%s are ignored, never decoded (only %s and .%s are read); counted in "
                    "the training record", ext, "/".join(f".{e}" for e in IMAGE_MEMBERS), TEXT_MEMBER)
        for reason in sorted(set(counts.samples_dropped) - self._reported):
            self._reported.add(reason)
            log.warning("training samples dropped (%s); counted in the training record", reason)


def train_batches(
    shards: list[str],
    transform: Callable[..., torch.Tensor],
    tokenize: Callable[[list[str]], torch.Tensor],
    *,
    batch_size: int,
    seed: int,
    shuffle_buffer: int = 2000,
    workers: int = 2,
    skip_batches: int = 0,
    pin_memory: bool = False,
    counts_so_far: dict[str, dict[str, int]] | None = None,
    stream_positions: list[int] | None = None,
    reduce_text: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    augment: bool = False,
    draft: int | None = None,
) -> TrainBatches:
    """An endless, seeded stream of (pixels (B,3,S,S), tokens (B,L)): shards drawn with replacement, samples
    shuffled in a buffer. The stream is the same for the same seed and number of workers.

    `pin_memory=True` (for a CUDA device) hands out page-locked batches, so `.to(device, non_blocking=True)` copies
    overlap with compute. `skip_batches=k` starts at batch k of that stream (for exact resume). The DataLoader takes batches from its
    workers in turn, so batch k is round k // W of worker k % W: every worker skips k // W batches' samples
    before decoding, and the k % W batches that remain before batch k are drawn and dropped.

    Samples dropped on the way (no caption, unreadable image, ...) make a worker's raw position differ from its
    batches x `batch_size`: pass `stream_positions`, the `stream_positions()` the interrupted run recorded at batch k,
    to skip exactly (without it, as for resume points written before it was recorded, no drops are assumed).

    Only each sample's image and .txt members are decoded (`_decode_samples`); the returned iterator's `counts()`
    says what was left out, continuing from `counts_so_far` (the record at batch k when resuming).

    `augment=True`: `transform(image, seed)` draws a stage's augmentation from the sample's own seed (`augment_seed`).
    `reduce_text(tokens, k)` (random / block text reduction, train/stage_setup.py) turns batch k's tokens into the
    stage's; it runs in this process, keyed by k, so its draws do not depend on the loader's workers.

    `draft=S` (opt-in, approximate: data/decode.py): JPEGs decoded at 1/2, 1/4 or 1/8 scale keeping both sides >= S.
    """
    import functools

    import webdataset as wds

    lanes = max(1, workers)
    rounds, remainder = divmod(skip_batches, lanes)
    if stream_positions is None:
        stream_positions = [rounds * batch_size] * lanes
    if len(stream_positions) != lanes:
        raise DataError(f"resume: the data stream was recorded for {len(stream_positions)} loader workers, this run "
                        f"has {lanes}; exact resume needs the same number")
    pipeline = wds.DataPipeline(
        wds.ResampledShards(shards, seed=seed, deterministic=True),
        wds.tarfile_to_samples(handler=wds.warn_and_continue),
        wds.detshuffle(shuffle_buffer, initial=min(shuffle_buffer, 500), seed=seed),
        functools.partial(_skip_samples, counts=list(stream_positions)),
        functools.partial(_decode_samples, transform=transform, seed=seed if augment else None, draft=draft),
        wds.batched(batch_size, collation_fn=functools.partial(_collate, tokenize=tokenize), partial=False),
    )
    loader = wds.WebLoader(pipeline, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                           persistent_workers=False, prefetch_factor=4 if workers else None,
                           multiprocessing_context=worker_context() if workers else None)
    batches = iter(loader)
    positions = StreamPositions(stream_positions, batch_size, handed_out=rounds * lanes)
    # Batches of round `rounds` that the uninterrupted run drew before batch k: drawn again and dropped (their
    # counts are already in `counts_so_far`), advancing their workers' positions as they did then.
    for _ in range(remainder):
        positions.advance(next(batches)[2])
    return TrainBatches(batches, positions, counts_so_far, reduce_text, first_batch=skip_batches)
