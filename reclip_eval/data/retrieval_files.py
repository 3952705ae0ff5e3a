"""Image-text retrieval sets in the three annotation formats users have:

- Karpathy's split JSON (`dataset_flickr30k.json`, `dataset_coco.json`):
  `{"images": [{"filepath": "val2014", "filename": "...jpg", "split": "test", "sentences": [{"raw": ...}]}]}`
- CLIP_benchmark's Flickr files (`flickr30k_test_karpathy.txt`): a header line, then `image.jpg,caption` lines.
- COCO-captions JSON (CLIP_benchmark's `coco_test_karpathy.json`): `{"images": [{"id", "file_name"}],
  "annotations": [{"image_id", "caption"}]}`; every annotation of an image is one of its captions.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reclip_eval.errors import DataError, read_json


@dataclass(frozen=True)
class RetrievalSet:
    image_paths: list[Path]
    captions: list[str]
    caption_image: list[int]  # caption j describes image caption_image[j]


@dataclass(frozen=True)
class _Entry:
    where: str  # how the file names this entry in an error: "images[3]", "line 12"
    path: Path
    captions: list[Any]  # checked by _build: non-empty strings


def _caption(value: Any, source: Path, entry: _Entry, index: int) -> str:
    """A caption must be text with something in it: the tokenizer would fail on a number or null, and an empty one
    would be scored as a query that matches nothing."""
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{source}: {entry.where} (image {entry.path.name}): caption {index} is {value!r}; "
                        "expected non-empty text")
    return value


def _build(entries: list[_Entry], source: Path, image_root: Path, listed: str) -> RetrievalSet:
    """The set, after refusing what would make its numbers wrong: no entries, a caption that is not text, an image
    listed twice (each copy's captions would tie with the other copy and count as misses, and the denominator would
    not be the benchmark's), or none of the images on disk (`listed` names the selection, e.g. "in split 'test'")."""
    if not entries:
        raise DataError(f"{source}: no images {listed}")
    first_at: dict[Path, str] = {}
    image_paths, captions, caption_image = [], [], []
    for index, entry in enumerate(entries):
        if entry.path in first_at:
            raise DataError(f"{source}: {entry.where} lists image {entry.path.name} again (first at "
                            f"{first_at[entry.path]}); a duplicate would be scored as a second image with its own "
                            "captions: remove it")
        first_at[entry.path] = entry.where
        if not entry.captions:
            raise DataError(f"{source}: {entry.where} (image {entry.path.name}) has no captions")
        image_paths.append(entry.path)
        captions.extend(_caption(value, source, entry, k) for k, value in enumerate(entry.captions))
        caption_image.extend([index] * len(entry.captions))
    _check_images_present(image_paths, source, image_root, listed)
    return RetrievalSet(image_paths, captions, caption_image)


def _check_images_present(image_paths: list[Path], source: Path, image_root: Path, listed: str) -> None:
    """Images missing here and there are skipped and listed in the results; none at all is a wrong folder."""
    if any(path.is_file() for path in image_paths):
        return
    where = f"looked for them under {image_root}/ (e.g. {image_paths[0]}), the folder this layout expects"
    if not image_root.is_dir():
        beside = sorted(p.name + "/" for p in image_root.parent.iterdir() if p.is_dir()) \
            if image_root.parent.is_dir() else []
        where += "; it does not exist" + (f" ({image_root.parent} holds {', '.join(beside[:8])})" if beside else "")
    raise DataError(f"{source}: 0 of the {len(image_paths)} images listed {listed} were found: {where}")


def read_karpathy_json(path: str | Path, image_root: str | Path, split: str = "test") -> RetrievalSet:
    path, image_root = Path(path), Path(image_root)
    data = read_json(path, what="annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a Karpathy split JSON (expected {{'images': [...]}})")
    entries = []
    for number, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or entry.get("split") != split:
            continue
        try:
            entries.append(_Entry(f"images[{number}]", image_root / entry.get("filepath", "") / entry["filename"],
                                  [s["raw"] for s in entry["sentences"]]))
        except (KeyError, TypeError):
            raise DataError(f"{path}: images[{number}] lacks 'filename' or 'sentences[].raw'") from None
    if not entries:
        splits = Counter(str(e.get("split")) for e in data["images"] if isinstance(e, dict))
        present = ", ".join(f"{name} ({count})" for name, count in sorted(splits.items())) or "none"
        raise DataError(f"{path}: no images in split {split!r}; the file's splits: {present}")
    return _build(entries, path, image_root, f"in split {split!r}")


def read_flickr_txt(path: str | Path, image_root: str | Path) -> RetrievalSet:
    """CLIP_benchmark's `flickr30k_<split>_karpathy.txt`; captions may contain commas."""
    path, image_root = Path(path), Path(image_root)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    grouped: dict[str, list[str]] = defaultdict(list)
    first_line: dict[str, int] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines[1:], start=2):  # the first line is a header
        line = line.strip()
        if not line:
            continue
        image, sep, caption = line.partition(".jpg,")
        if not sep:
            raise DataError(f"{path}: line {number}: expected 'image.jpg,caption', got {line[:80]!r}")
        first_line.setdefault(image + ".jpg", number)
        grouped[image + ".jpg"].append(caption)
    entries = [_Entry(f"line {first_line[name]}", image_root / name, caps) for name, caps in grouped.items()]
    return _build(entries, path, image_root, "in the file")


def read_coco_captions(path: str | Path, image_root: str | Path) -> RetrievalSet:
    path, image_root = Path(path), Path(image_root)
    data = read_json(path, what="annotation file")
    try:
        files: dict[Any, str] = {}
        for number, img in enumerate(data["images"]):
            if img["id"] in files:
                raise DataError(f"{path}: images[{number}] repeats image id {img['id']!r}")
            files[img["id"]] = img["file_name"]
        grouped: dict[Any, list[Any]] = defaultdict(list)
        for number, ann in enumerate(data["annotations"]):
            if ann["image_id"] not in files:
                raise DataError(f"{path}: annotations[{number}] is for image_id {ann['image_id']!r}, which is not "
                                "in images[]")
            caption = ann["caption"]
            grouped[ann["image_id"]].append(caption.strip() if isinstance(caption, str) else caption)
    except (KeyError, TypeError):
        raise DataError(f"{path}: not a COCO captions JSON (images[].id/file_name, annotations[].image_id/caption)") \
            from None
    # Image order as in the file, like torchvision's CocoCaptions (sorted ids) used by CLIP_benchmark.
    entries = [_Entry(f"image id {i!r}", image_root / files[i], grouped[i]) for i in sorted(files)]
    return _build(entries, path, image_root, "in the file")
