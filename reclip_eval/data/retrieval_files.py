"""Image-text retrieval sets in the three annotation formats users have:

- Karpathy's split JSON (`dataset_flickr30k.json`, `dataset_coco.json`):
  `{"images": [{"filepath": "val2014", "filename": "...jpg", "split": "test", "sentences": [{"raw": ...}]}]}`
- CLIP_benchmark's Flickr files (`flickr30k_test_karpathy.txt`): a header line, then `image.jpg,caption` lines.
- COCO-captions JSON (CLIP_benchmark's `coco_test_karpathy.json`): `{"images": [{"id", "file_name"}],
  "annotations": [{"image_id", "caption"}]}`; every annotation of an image is one of its captions.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reclip_eval.errors import DataError, read_json, unique_mapping


@dataclass(frozen=True)
class RetrievalSet:
    image_paths: list[Path]
    captions: list[str]
    caption_image: list[int]  # caption j describes image caption_image[j]
    load: Callable[[Any], Any] | None = None  # opens an image source (None: image_paths are files)
    files: list[Path] = field(default_factory=list)  # data files to fingerprint (empty: the images + annotations)
    extra: dict[str, Any] = field(default_factory=dict)  # layout-specific counts for the results


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
    first: dict[Path, _Entry] = {}
    image_paths, captions, caption_image = [], [], []
    for index, entry in enumerate(entries):
        if entry.path in first:
            raise DataError(f"{source}: {entry.where} lists image {entry.path.name} again (first at "
                            f"{first[entry.path].where}; captions {_opening(first[entry.path])} there, "
                            f"{_opening(entry)} here); a duplicate would be scored as a second image with its own "
                            "captions: remove it")
        first[entry.path] = entry
        if not entry.captions:
            raise DataError(f"{source}: {entry.where} (image {entry.path.name}) has no captions")
        image_paths.append(entry.path)
        captions.extend(_caption(value, source, entry, k) for k, value in enumerate(entry.captions))
        caption_image.extend([index] * len(entry.captions))
    _check_images_present(image_paths, source, image_root, listed)
    return RetrievalSet(image_paths, captions, caption_image)


def _opening(entry: _Entry) -> str:
    """An entry's first caption, shortened, to tell two entries of one image apart in an error."""
    text = repr(entry.captions[0]) if entry.captions else "(none)"
    return text if len(text) <= 40 else text[:37] + "..."


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


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _karpathy_entry(entry: dict, number: int, path: Path, image_root: Path) -> _Entry:
    where = f"images[{number}]"
    filename, folder = entry.get("filename"), entry.get("filepath", "")
    if not _text(filename):
        raise DataError(f"{path}: {where}: filename is {filename!r}; expected the image's file name (text)")
    if not isinstance(folder, str):
        raise DataError(f"{path}: {where} (image {filename}): filepath is {folder!r}; expected a folder name (text)")
    sentences = entry.get("sentences")
    if not isinstance(sentences, list) or not all(isinstance(s, dict) and "raw" in s for s in sentences):
        raise DataError(f"{path}: {where} (image {filename}): sentences is {str(sentences)[:60]}; expected a list "
                        "of {'raw': caption}")
    return _Entry(where, image_root / folder / filename, [s["raw"] for s in sentences])


def read_karpathy_json(path: str | Path, image_root: str | Path, split: str = "test") -> RetrievalSet:
    path, image_root = Path(path), Path(image_root)
    data = read_json(path, what="annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a Karpathy split JSON (expected {{'images': [...]}})")
    not_objects = [number for number, entry in enumerate(data["images"]) if not isinstance(entry, dict)]
    if not_objects:
        raise DataError(f"{path}: images[{not_objects[0]}] is {data['images'][not_objects[0]]!r}; expected an "
                        "object {filepath, filename, split, sentences}")
    entries = [_karpathy_entry(entry, number, path, image_root) for number, entry in enumerate(data["images"])
               if entry.get("split") == split]
    if not entries:
        splits = Counter(str(e.get("split")) for e in data["images"])
        present = ", ".join(f"{name} ({count})" for name, count in sorted(splits.items())) or "none"
        raise DataError(f"{path}: no images in split {split!r}; the file's splits: {present}")
    return _build(entries, path, image_root, f"in split {split!r}")


def read_flickr_txt(path: str | Path, image_root: str | Path) -> RetrievalSet:
    """CLIP_benchmark's `flickr30k_<split>_karpathy.txt`; captions may contain commas. An image's lines come
    together; an image listed again after another one's lines is refused (two files run together, or an edit)."""
    path, image_root = Path(path), Path(image_root)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    grouped: dict[str, list[str]] = defaultdict(list)
    first_line: dict[str, int] = {}
    previous = None
    for number, line in enumerate(lines[1:], start=2):  # the first line is a header
        line = line.strip()
        if not line:
            continue
        image, sep, caption = line.partition(".jpg,")
        if not sep:
            raise DataError(f"{path}: line {number}: expected 'image.jpg,caption', got {line[:80]!r}")
        name = image + ".jpg"
        if name in first_line and name != previous:
            raise DataError(f"{path}: line {number} lists image {name} again (first at line {first_line[name]}; "
                            f"captions {grouped[name][0][:30]!r}... there, {caption[:30]!r} here), after other "
                            "images' lines; expected each image's lines together: remove the repeat")
        first_line.setdefault(name, number)
        grouped[name].append(caption)
        previous = name
    entries = [_Entry(f"line {first_line[name]}", image_root / name, caps) for name, caps in grouped.items()]
    return _build(entries, path, image_root, "in the file")


def _is_image_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _coco_files(images: list, path: Path) -> dict[Any, str]:
    """image id -> file name, the ids all integers or all strings (they are sorted, as torchvision's CocoCaptions
    does, and a mix has no order)."""
    rows = []
    for number, image in enumerate(images):
        where = f"images[{number}]"
        if not isinstance(image, dict) or not _is_image_id(image.get("id")) or not _text(image.get("file_name")):
            raise DataError(f"{path}: {where} is {str(image)[:80]}; expected {{'id': integer or string, "
                            "'file_name': text}")
        rows.append((image["id"], image["file_name"], where))
    kinds = {type(image_id): where for image_id, _, where in rows}
    if len(kinds) > 1:
        raise DataError(f"{path}: image ids mix integers (e.g. at {kinds[int]}) and strings (e.g. at {kinds[str]}); "
                        "expected one kind")
    return unique_mapping(rows, path, "image id", "file_name")


def read_coco_captions(path: str | Path, image_root: str | Path) -> RetrievalSet:
    path, image_root = Path(path), Path(image_root)
    data = read_json(path, what="annotation file")
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in ("images", "annotations")):
        raise DataError(f"{path}: not a COCO captions JSON (expected {{'images': [{{id, file_name}}], "
                        "'annotations': [{image_id, caption}]})")
    files = _coco_files(data["images"], path)
    grouped: dict[Any, list[Any]] = defaultdict(list)
    annotation_ids = []
    for number, ann in enumerate(data["annotations"]):
        where = f"annotations[{number}]"
        if not isinstance(ann, dict) or "caption" not in ann:
            raise DataError(f"{path}: {where} is {str(ann)[:80]}; expected {{'image_id', 'caption'}}")
        image_id = ann.get("image_id")
        if not _is_image_id(image_id) or image_id not in files:
            raise DataError(f"{path}: {where} is for image_id {image_id!r}, which is not in images[]")
        if "id" in ann:
            if not _is_image_id(ann["id"]):
                raise DataError(f"{path}: {where} has id {ann['id']!r}; expected an integer or a string")
            annotation_ids.append((ann["id"], ann["caption"], where))
        caption = ann["caption"]
        grouped[image_id].append(caption.strip() if isinstance(caption, str) else caption)
    unique_mapping(annotation_ids, path, "annotation id", "caption")
    # Image order as in torchvision's CocoCaptions (sorted ids), which CLIP_benchmark reads this file with.
    entries = [_Entry(f"image id {i!r}", image_root / files[i], grouped[i]) for i in sorted(files)]
    return _build(entries, path, image_root, "in the file")
