"""Checks on the two inputs of the LVIS evaluator, made before anything is evaluated: the annotation file and the
detections (results) file. Both failure modes they catch otherwise give a plausible AP with no word:

- an annotation file without the federated fields (`neg_category_ids`, `not_exhaustive_category_ids`) makes every
  unannotated category "never checked", so false positives on verified negatives are dropped and AP is inflated
  (lvis-api, the reference, refuses such a file with a KeyError);
- a detection with a negative width or height, a NaN score or a short bbox is scored as something else, or crashes
  deep inside the evaluator.

A bad detections file is one line naming the first bad entry (index and image id), what is wrong with it and how many
entries share the problem, so that a user fixes the exporter rather than entry by entry.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from reclip_eval.errors import DataError, unique_mapping

FEDERATED_FIELDS = ("neg_category_ids", "not_exhaustive_category_ids")
LISTS = ("images", "annotations", "categories")
ALLOW_FLAG = "--allow-missing-federated-fields"
DETECTION_FORMAT = "[{image_id, category_id, score, bbox: [x, y, width, height], segmentation (RLE, for segm)}]"


def check_annotations(ground_truth: Any, source: str, *, allow_missing_federated_fields: bool = False
                      ) -> dict[str, int]:
    """Raise a DataError unless `ground_truth` is an LVIS annotation file; returns how many images lack each federated
    field (all zero unless `allow_missing_federated_fields`, which is how the caller records that it evaluated
    without them)."""
    if not isinstance(ground_truth, dict) or not all(isinstance(ground_truth.get(key), list) for key in LISTS):
        raise DataError(f"{source}: not an LVIS/COCO annotation file (needs the lists {', '.join(LISTS)})")
    categories, images = _unique_ids(ground_truth, "categories", source), _unique_ids(ground_truth, "images", source)
    missing_freq = [c["id"] for c in ground_truth["categories"] if c.get("frequency") not in ("r", "c", "f")]
    if missing_freq:
        raise DataError(f"{source}: categories {missing_freq[:5]} have no LVIS frequency ('r', 'c' or 'f')")
    _unique_ids(ground_truth, "annotations", source)
    for index, annotation in enumerate(ground_truth["annotations"]):
        problem = _annotation_problem(annotation, images, categories)
        if problem:
            raise DataError(f"{source}: annotations[{index}] (id {annotation['id']}) {problem}")
    images = ground_truth["images"]
    lacking: dict[str, list[int]] = {f: [] for f in FEDERATED_FIELDS}
    for index, image in enumerate(images):
        if not _is_size(image.get("height")) or not _is_size(image.get("width")):
            raise DataError(f"{source}: image {index} (id {image['id']}) has height {image.get('height')!r} and "
                            f"width {image.get('width')!r}; expected positive integers")
        for name in FEDERATED_FIELDS:
            if name not in image:
                lacking[name].append(index)
            elif not isinstance(image[name], list) or not all(_known(c, categories) for c in image[name]):
                raise DataError(f"{source}: image {index} (id {image.get('id')}) has {name} = {image[name]!r}, "
                                "expected a list of category ids")
    counts = {name: len(indices) for name, indices in lacking.items()}
    if any(counts.values()) and not allow_missing_federated_fields:
        first = min(i for indices in lacking.values() for i in indices[:1])
        absent = [name for name in FEDERATED_FIELDS if first in lacking[name]]
        raise DataError(
            f"{source}: image {first} (id {images[first].get('id')}) has no {' or '.join(absent)}; "
            + ", ".join(f"{n} of {len(images)} images lack {name}" for name, n in counts.items() if n)
            + ". LVIS needs both on every image (without them false positives on verified-negative categories are "
            f"not counted and AP is inflated); to evaluate anyway, reading them as empty, pass {ALLOW_FLAG} to "
            "`reclip-eval detect evaluate` (recorded in the metrics)")
    return counts


def _unique_ids(ground_truth: dict, key: str, source: str) -> set[int]:
    """The integer ids of the objects in `ground_truth[key]`; an entry that is no object with an integer id, or an
    id used twice (the evaluator's index keeps one of the two silently), is one DataError naming both entries."""
    label, singular = {"images": ("coco_url", "image"), "categories": ("name", "category"),
                       "annotations": ("category_id", "annotation")}[key]
    entries = []
    for index, entry in enumerate(ground_truth[key]):
        if not isinstance(entry, dict) or not _is_int(entry.get("id")):
            raise DataError(f"{source}: {key}[{index}] is {str(entry)[:80]}; expected an object with an integer id")
        entries.append((entry["id"], entry.get(label), f"{key}[{index}]"))
    return set(unique_mapping(entries, source, f"{singular} id", label))


def _annotation_problem(annotation: dict, images: set[int], categories: set[int]) -> str | None:
    """What is wrong with one ground-truth annotation (its id already checked), or None."""
    if annotation["id"] < 1:  # faster-coco-eval marks an unmatched detection with 0: an id 0 skews AP silently
        return "has an id below 1; expected annotation ids 1, 2, ... (the evaluator reads 0 as 'unmatched')"
    if not _known(annotation.get("image_id"), images):
        return f"has image_id {annotation.get('image_id')!r}, which is not in images"
    if not _known(annotation.get("category_id"), categories):
        return f"has category_id {annotation.get('category_id')!r}, which is not in categories"
    box = annotation.get("bbox")
    if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)) or min(box[2:]) < 0:
        return f"has bbox {box!r}; expected 4 finite numbers [x, y, width, height], width and height >= 0"
    if not _is_number(annotation.get("area")) or annotation["area"] < 0:
        return f"has area {annotation.get('area')!r}; expected a finite number >= 0"
    if "segmentation" in annotation and not _is_mask(annotation["segmentation"]):
        return "has a segmentation that is neither an RLE {size, counts} nor a list of polygons"
    return None


def with_federated_defaults(ground_truth: dict) -> dict:
    """`ground_truth` with missing federated fields read as empty lists (a copy; the caller's dict is untouched)."""
    if all(name in image for image in ground_truth["images"] for name in FEDERATED_FIELDS):
        return ground_truth
    images = [{**{name: [] for name in FEDERATED_FIELDS}, **image} for image in ground_truth["images"]]
    return {**ground_truth, "images": images}


def default_iou_types(detections: Any) -> list[str]:
    """bbox, plus segm when the (first) detection carries a mask."""
    first = detections[0] if isinstance(detections, list) and detections else None
    return ["bbox", "segm"] if isinstance(first, dict) and "segmentation" in first else ["bbox"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_size(value: Any) -> bool:
    return _is_int(value) and value > 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_mask(value: Any) -> bool:
    """An RLE ({size, counts}) or a list of polygons, the two forms COCO-style results carry."""
    if isinstance(value, dict):
        return {"size", "counts"} <= set(value)
    return isinstance(value, list) and bool(value) and all(isinstance(p, list) for p in value)


def _known(value: Any, ids: set) -> bool:
    try:
        return value in ids
    except TypeError:  # an unhashable id (a list, an object) is no id of the annotations
        return False


def _problem(det: Any, images: set, categories: set, iou_type: str) -> tuple[str, str] | None:
    """(kind, what is wrong) for the first problem of one detection, or None when it is fine."""
    if not isinstance(det, dict):
        return "not-object", f"is a JSON {type(det).__name__}, not an object"
    required = ["image_id", "category_id", "score", "bbox" if iou_type == "bbox" else "segmentation"]
    missing = [key for key in required if key not in det]
    if missing:
        return f"missing {missing}", f"has no {', '.join(missing)}"
    if not _known(det["image_id"], images):
        return "image", f"image_id {det['image_id']!r} is not in the annotations' images"
    if not _known(det["category_id"], categories):
        return "category", f"category_id {det['category_id']!r} is not in the annotations' categories"
    if not _is_number(det["score"]):
        return "score", f"score {det['score']!r} is not a finite number"
    if "bbox" in det:
        box = det["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            return "bbox", f"bbox {box!r} is not 4 finite numbers [x, y, width, height]"
        if box[2] < 0 or box[3] < 0:
            return "negative", f"bbox {box!r} has a negative width or height"
    if "segmentation" in det and not _is_mask(det["segmentation"]):
        return "segmentation", "segmentation is neither an RLE {size, counts} nor a list of polygons"
    return None


def check_detections(detections: Any, ground_truth: dict, iou_type: str, source: str = "detections") -> None:
    """Raise one DataError line naming the first bad detection (index, image id), what is wrong and how many entries
    share that problem. `ground_truth` has passed `check_annotations`."""
    if not isinstance(detections, list):
        got = f"an object with keys {sorted(detections)[:5]}" if isinstance(detections, dict) else \
            f"a {type(detections).__name__}"
        raise DataError(f"{source}: expected a JSON list {DETECTION_FORMAT}, got {got}")
    images = {image["id"] for image in ground_truth["images"]}
    categories = {category["id"] for category in ground_truth["categories"]}
    first: tuple[int, str, str] | None = None
    kinds: Counter[str] = Counter()
    for index, det in enumerate(detections):
        found = _problem(det, images, categories, iou_type)
        if found:
            kinds[found[0]] += 1
            first = first or (index, *found)
    if first is None:
        return
    index, kind, what = first
    image_id = detections[index].get("image_id") if isinstance(detections[index], dict) else None
    if kind in ("image", "category"):  # every unknown id at once: usually a whole other set's ids
        key, ids = (("image_id", images) if kind == "image" else ("category_id", categories))
        unknown = dict.fromkeys(repr(d[key]) for d in detections
                                if isinstance(d, dict) and key in d and not _known(d[key], ids))
        what += f" (unknown {key}s: [{', '.join(list(unknown)[:10])}]{', ...' if len(unknown) > 10 else ''})"
    others = sum(kinds.values()) - kinds[kind]
    raise DataError(f"{source}: entry {index} (image_id {image_id!r}) {what}; {kinds[kind]} of {len(detections)} "
                    "entries have this problem" + (f", {others} others another one" if others else "")
                    + f" (expected {DETECTION_FORMAT})")
