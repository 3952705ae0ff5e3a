"""Image-text retrieval sets in the three annotation formats users have:

- Karpathy's split JSON (`dataset_flickr30k.json`, `dataset_coco.json`):
  `{"images": [{"filepath": "val2014", "filename": "...jpg", "split": "test", "sentences": [{"raw": ...}]}]}`
- CLIP_benchmark's Flickr files (`flickr30k_test_karpathy.txt`): a header line, then `image.jpg,caption` lines.
- COCO-captions JSON (CLIP_benchmark's `coco_test_karpathy.json`): `{"images": [{"id", "file_name"}],
  "annotations": [{"image_id", "caption"}]}`; every annotation of an image is one of its captions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from reclip_eval.errors import DataError, read_json


@dataclass(frozen=True)
class RetrievalSet:
    image_paths: list[Path]
    captions: list[str]
    caption_image: list[int]  # caption j describes image caption_image[j]


def _build(pairs: list[tuple[Path, list[str]]], source: Path) -> RetrievalSet:
    if not pairs:
        raise DataError(f"{source}: no images in the requested split")
    image_paths, captions, caption_image = [], [], []
    for index, (path, texts) in enumerate(pairs):
        if not texts:
            raise DataError(f"{source}: image {path.name} has no captions")
        image_paths.append(path)
        captions.extend(texts)
        caption_image.extend([index] * len(texts))
    return RetrievalSet(image_paths, captions, caption_image)


def read_karpathy_json(path: str | Path, image_root: str | Path, split: str = "test") -> RetrievalSet:
    path, image_root = Path(path), Path(image_root)
    data = read_json(path, what="annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a Karpathy split JSON (expected {{'images': [...]}})")
    pairs = []
    for number, entry in enumerate(data["images"]):
        if entry.get("split") != split:
            continue
        try:
            pairs.append((image_root / entry.get("filepath", "") / entry["filename"],
                          [s["raw"] for s in entry["sentences"]]))
        except (KeyError, TypeError):
            raise DataError(f"{path}: images[{number}] lacks 'filename' or 'sentences[].raw'") from None
    return _build(pairs, path)


def read_flickr_txt(path: str | Path, image_root: str | Path) -> RetrievalSet:
    """CLIP_benchmark's `flickr30k_<split>_karpathy.txt`; captions may contain commas."""
    path, image_root = Path(path), Path(image_root)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    grouped: dict[str, list[str]] = defaultdict(list)
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines[1:], start=2):  # the first line is a header
        line = line.strip()
        if not line:
            continue
        image, sep, caption = line.partition(".jpg,")
        if not sep:
            raise DataError(f"{path}: line {number}: expected 'image.jpg,caption', got {line[:80]!r}")
        grouped[image + ".jpg"].append(caption)
    return _build([(image_root / name, caps) for name, caps in grouped.items()], path)


def read_coco_captions(path: str | Path, image_root: str | Path) -> RetrievalSet:
    path, image_root = Path(path), Path(image_root)
    data = read_json(path, what="annotation file")
    try:
        files = {img["id"]: img["file_name"] for img in data["images"]}
        grouped: dict[int, list[str]] = defaultdict(list)
        for ann in data["annotations"]:
            grouped[ann["image_id"]].append(ann["caption"].strip())
    except (KeyError, TypeError):
        raise DataError(f"{path}: not a COCO captions JSON (images[].id/file_name, annotations[].image_id/caption)") \
            from None
    # Image order as in the file, like torchvision's CocoCaptions (sorted ids) used by CLIP_benchmark.
    return _build([(image_root / files[i], grouped[i]) for i in sorted(files)], path)
