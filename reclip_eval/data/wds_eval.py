"""CLIP_benchmark's webdataset eval sets (`clip-benchmark/wds_*`, written by `clip_benchmark.webdataset_builder`),
read in place from their tar shards: no extraction, and nothing decoded but each sample's image and its label or
captions.

A set's folder holds `<split>/nshards.txt` and `<split>/0.tar ... (n-1).tar`, plus at its root `classnames.txt`,
`zeroshot_classification_templates.txt` and `dataset_type.txt` (`classification` when absent, `retrieval`,
`multilabel`). A sample is the tar members sharing a key (`s0000003.webp`, `s0000003.cls`, webdataset's grouping):
an image (`webp`, `png`, `jpg`, `jpeg`, the first present, as CLIP_benchmark picks it) with `cls` (class index),
`txt` (captions, one a line) or `npy` (multilabel vector).

Why not webdataset's pipeline: its default decoders unpickle `.pyd`/`.pickle` members, and a shard is data, never
code. Here the shards are indexed once (tar headers, read by data/tar_index.py, plus the small label members), and
images are read later by offset and decoded in the evaluation's DataLoader workers, so workers, skipped-image
reporting and torchrun sharding work as for image folders: the items are split, not the shards, so every worker
has work however few shards a set has (webdataset's split by worker leaves a worker without a shard with nothing,
and CLIP_benchmark's loader then fails: "No samples found in dataset"), and the order of the results is the set's
own with any number of workers (tests/test_wds_workers.py).
Every other member is counted by extension in the results and never read.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from reclip_eval.data.images import open_image
from reclip_eval.data.tar_index import regular_members
from reclip_eval.errors import DataError

IMAGE_MEMBERS = ("webp", "png", "jpg", "jpeg")  # CLIP_benchmark's order of preference (build_wds_dataset)
LABEL_MEMBERS = {"classification": "cls", "retrieval": "txt", "multilabel": "npy"}
# webdataset's base_plus_ext: the key is the path up to the first dot of the file name, the rest its extension.
_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


@dataclass(frozen=True)
class TarMember:
    """Where one image's bytes lie in a shard; `str()` names it in skipped-image lists."""

    shard: Path
    name: str
    offset: int
    size: int

    def __str__(self) -> str:
        return f"{self.shard}:{self.name}"


def load_tar_member(member: TarMember, draft: int | None = None) -> Image.Image:
    """The decoded image at `member` (picklable: DataLoader workers open the shard themselves)."""
    with open(member.shard, "rb") as shard:
        shard.seek(member.offset)
        return open_image(io.BytesIO(shard.read(member.size)), draft)


@dataclass
class WdsSet:
    root: Path
    dataset_type: str  # classification, retrieval, multilabel
    shards: list[Path]
    images: list[TarMember] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)  # per image: class index, list of captions, or 0/1 vector
    members_ignored: Counter[str] = field(default_factory=Counter)  # by extension, never decoded
    samples_dropped: Counter[str] = field(default_factory=Counter)  # by reason

    def counts(self) -> dict[str, Any]:
        """What the results record about the shards: how many, and what was left out."""
        return {"wds_shards": len(self.shards), "wds_members_ignored": dict(sorted(self.members_ignored.items())),
                "wds_samples_dropped": dict(sorted(self.samples_dropped.items()))}


def read_text_lines(path: Path) -> list[str] | None:
    """A metadata file's stripped lines (as CLIP_benchmark reads them), or None when it is absent."""
    if not path.is_file():
        return None
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def dataset_type(root: Path) -> str:
    lines = read_text_lines(root / "dataset_type.txt")
    kind = (lines[0].lower() if lines else "") if lines is not None else "classification"
    if kind not in LABEL_MEMBERS:
        raise DataError(f"{root / 'dataset_type.txt'}: dataset type {kind!r}; expected one of "
                        f"{', '.join(LABEL_MEMBERS)} (CLIP_benchmark's dataset_type.txt)")
    return kind


def list_wds_shards(root: Path, split: str) -> list[Path]:
    """`<split>/0.tar ... (n-1).tar` with n from `<split>/nshards.txt`; any disagreement is refused (a partial copy
    would otherwise be evaluated as if it were the whole set)."""
    nshards_file = root / split / "nshards.txt"
    lines = read_text_lines(nshards_file)
    if lines is None:
        raise DataError(f"{nshards_file}: missing; expected the number of shards (CLIP_benchmark's wds layout)")
    text = " ".join(line for line in lines if line)
    if not text.isdigit() or int(text) < 1:
        raise DataError(f"{nshards_file}: holds {text!r}; expected the number of shards, an integer >= 1")
    expected = [root / split / f"{index}.tar" for index in range(int(text))]
    found = sorted((root / split).glob("*.tar"))
    missing = [p.name for p in expected if not p.is_file()]
    extra = sorted({p.name for p in found} - {p.name for p in expected})
    if missing or extra:
        details = "; ".join(part for part in (f"missing {', '.join(missing[:5])}" if missing else "",
                                              f"not counted {', '.join(extra[:5])}" if extra else "") if part)
        raise DataError(f"{nshards_file}: says {int(text)} shards (0.tar .. {int(text) - 1}.tar), {root / split} "
                        f"holds {len(found)} .tar files ({details}); a partial or mixed copy is not evaluated")
    return expected


def _group_samples(shard: Path, stream: BinaryIO) -> list[tuple[str, dict[str, TarMember]]]:
    """(key, {extension: member}) per sample, consecutive members of one key forming a sample, as webdataset groups."""
    samples: list[tuple[str, dict[str, TarMember]]] = []
    try:
        for name, offset, size in regular_members(stream, str(shard)):
            match = _KEY_EXT.match(name)
            if match is None:
                continue
            key, ext = match.group(1), match.group(2).lower()
            if not samples or samples[-1][0] != key:
                samples.append((key, {}))
            if ext in samples[-1][1]:
                raise DataError(f"{shard}: sample {key!r} has two .{ext} members; expected one of each")
            samples[-1][1][ext] = TarMember(shard, name, offset, size)
    except OSError as e:
        raise DataError(f"{shard}: unreadable tar ({type(e).__name__}: {e})") from None
    return samples


def _read_member(stream: BinaryIO, member: TarMember) -> bytes:
    stream.seek(member.offset)
    return stream.read(member.size)


def _label(kind: str, data: bytes, where: str, num_classes: int | None) -> Any:
    """A sample's label member, decoded by hand: `cls` an integer, `txt` UTF-8 lines, `npy` without pickles."""
    try:
        if kind == "classification":
            text = data.decode("utf-8").strip()
            if not re.fullmatch(r"-?\d+", text):
                raise DataError(f"{where}.cls holds {text[:20]!r}; expected a class index")
            index = int(text)
            if num_classes is not None and not 0 <= index < num_classes:
                raise DataError(f"{where}.cls: class index {index} is outside classnames.txt's {num_classes} "
                                f"classes (0..{num_classes - 1})")
            return index
        if kind == "retrieval":
            captions = data.decode("utf-8").splitlines()
            if not captions or not all(c.strip() for c in captions):
                raise DataError(f"{where}.txt: captions {captions[:3]!r}; expected non-empty lines, one a caption")
            return captions
        vector = np.load(io.BytesIO(data), allow_pickle=False)
    except (UnicodeDecodeError, ValueError, OSError) as e:
        raise DataError(f"{where}: label member unreadable ({type(e).__name__}: {e})") from None
    if vector.ndim != 1 or (num_classes is not None and vector.shape[0] != num_classes):
        raise DataError(f"{where}.npy: shape {vector.shape}; expected ({num_classes},), one 0/1 entry per class")
    if vector.dtype.kind not in "biuf" or not np.isin(vector, (0, 1)).all():
        raise DataError(f"{where}.npy: values {np.unique(vector)[:5].tolist()}; expected 0/1 per class")
    return vector.astype(np.int64)


def read_wds_set(root: Path, split: str, expect: tuple[str, ...], class_names: tuple[str, ...] | None = None
                 ) -> WdsSet:
    """Index the set at `root`: its type must be one of `expect`; with `class_names`, the set's classnames.txt must
    name the same classes in the same order (its labels index it, our prompts come from the task's names)."""
    kind = dataset_type(root)
    if kind not in expect:
        raise DataError(f"{root / 'dataset_type.txt'}: a {kind} set; this task reads {' or '.join(expect)} sets")
    num_classes = None
    if kind != "retrieval":
        num_classes = len(_check_classnames(root, class_names))
    wds = WdsSet(root, kind, list_wds_shards(root, split))
    for shard in wds.shards:
        with open(shard, "rb") as stream:
            _index_shard(wds, shard, stream, num_classes)
    if not wds.images:
        raise DataError(f"{root / split}: no samples with an image and a .{LABEL_MEMBERS[kind]} member in "
                        f"{len(wds.shards)} shard(s)")
    return wds


def _index_shard(wds: WdsSet, shard: Path, stream: BinaryIO, num_classes: int | None) -> None:
    """Add the shard's samples to `wds`: each image's place, its label decoded, every other member counted."""
    label_ext = LABEL_MEMBERS[wds.dataset_type]
    for key, members in _group_samples(shard, stream):
        image_ext = next((ext for ext in IMAGE_MEMBERS if ext in members), None)
        wds.members_ignored.update(ext for ext in members if ext not in (image_ext, label_ext))
        if image_ext is None or label_ext not in members:
            wds.samples_dropped["no image" if image_ext is None else f"no .{label_ext}"] += 1
            continue
        where = f"{shard}: sample {key}"
        wds.labels.append(_label(wds.dataset_type, _read_member(stream, members[label_ext]), where, num_classes))
        wds.images.append(members[image_ext])


def _check_classnames(root: Path, class_names: tuple[str, ...] | None) -> list[str]:
    path = root / "classnames.txt"
    names = read_text_lines(path)
    if names is None:
        raise DataError(f"{path}: missing; a classification set's labels index it")
    # Every line is a class, a blank one too: CLIP_benchmark reads the file so, and its own class list for
    # vtab/clevr_closest_object_distance has an empty name at index 3 (dropping it would shift the labels after it).
    if class_names is None:
        return names
    if len(names) != len(class_names):
        raise DataError(f"{path}: {len(names)} classes; the task has {len(class_names)}, so the set's labels are "
                        "not the task's")
    differ = [i for i, (a, b) in enumerate(zip(names, class_names, strict=True)) if a.casefold() != b.casefold()]
    if differ:
        i = differ[0]
        raise DataError(f"{path}: class {i} is {names[i]!r}, the task's class {i} is {class_names[i]!r} "
                        f"({len(differ)} classes differ); the set's labels are not the task's classes")
    return names
