"""Image-text retrieval sets in Karpathy's split JSON (`dataset_flickr30k.json`, `dataset_coco.json`).

    {"images": [{"filepath": "val2014", "filename": "...jpg", "split": "test",
                 "sentences": [{"raw": "A man ..."}, ...]}, ...]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from reclip_eval.errors import DataError


@dataclass(frozen=True)
class RetrievalSet:
    image_paths: list[Path]
    captions: list[str]
    caption_image: list[int]  # caption j describes image caption_image[j]


def read_karpathy_json(path: str | Path, image_root: str | Path, split: str = "test") -> RetrievalSet:
    path, image_root = Path(path), Path(image_root)
    if not path.is_file():
        raise DataError(f"{path}: Karpathy split file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a Karpathy split JSON (expected {{'images': [...]}}): {e}") from None
    image_paths, captions, caption_image = [], [], []
    for number, entry in enumerate(entries):
        if entry.get("split") != split:
            continue
        try:
            filename = entry["filename"]
            sentences = [s["raw"] for s in entry["sentences"]]
        except (KeyError, TypeError):
            raise DataError(f"{path}: images[{number}] lacks 'filename' or 'sentences[].raw'") from None
        if not sentences:
            raise DataError(f"{path}: images[{number}] ({filename}) has no captions")
        image_index = len(image_paths)
        image_paths.append(image_root / entry.get("filepath", "") / filename)
        captions.extend(sentences)
        caption_image.extend([image_index] * len(sentences))
    if not image_paths:
        raise DataError(f"{path}: no images in split {split!r}")
    return RetrievalSet(image_paths, captions, caption_image)
