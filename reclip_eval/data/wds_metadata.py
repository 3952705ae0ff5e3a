"""Each image's metadata vector in DataComp's WILDS and fairness webdatasets (FMoW, iWildCam, Dollar Street, GeoDE):
an `npy` member beside the image and its `cls`, one integer per metadata field (DataComp's evaluators name the fields:
FMoW `region, year, y`, GeoDE `region, country`, Dollar Street `income_ds, income_meta, region`). Read without
unpickling, only for the images a task evaluates, by the sample key of each image's member."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reclip_eval.data.wds_eval import TarMember, _group_samples, _read_member
from reclip_eval.errors import DataError


def _decode(data: bytes, where: str) -> np.ndarray:
    try:
        vector = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{where}: not a numpy array without pickles ({type(e).__name__}: {e})") from None
    if vector.ndim != 1 or vector.dtype.kind not in "iuf" or not np.all(np.isfinite(vector)):
        raise DataError(f"{where}: expected a 1-D numeric metadata vector, got shape {vector.shape} {vector.dtype}")
    if not np.array_equal(vector, np.round(vector)):
        raise DataError(f"{where}: metadata must be whole numbers (group indices), got {vector.tolist()}")
    return vector.astype(np.int64)


def read_image_metadata(images: Sequence[TarMember]) -> np.ndarray:
    """(N, D) int64: the npy vector of each image's sample, in the order of `images`. A sample without one, or
    vectors of different lengths, is a DataError naming the shard and sample."""
    wanted: dict[Path, set[str]] = {}
    for member in images:
        wanted.setdefault(member.shard, set()).add(member.name)
    by_image: dict[tuple[Path, str], np.ndarray] = {}
    for shard, names in wanted.items():
        with open(shard, "rb") as stream:
            for key, members in _group_samples(shard, stream):
                image = next((m.name for m in members.values() if m.name in names), None)
                if image is None:
                    continue
                if "npy" not in members:
                    raise DataError(f"{shard}: sample {key}: no .npy metadata member (this task groups its images "
                                    f"by it, as DataComp's WILDS / fairness sets carry it)")
                by_image[shard, image] = _decode(_read_member(stream, members["npy"]), f"{shard}: sample {key}.npy")
    rows = [by_image[member.shard, member.name] for member in images]
    lengths = sorted({len(row) for row in rows})
    if len(lengths) > 1:
        raise DataError(f"{images[0].shard.parent}: metadata vectors of lengths {lengths}; expected one length")
    return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.int64)
