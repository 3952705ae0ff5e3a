"""LVIS evaluation with exact LVIS semantics on faster-coco-eval's LVIS mode (`lvis_style=True`).

LVIS semantics, as lvis-api implements them (the tests compare both to 1e-6):
- at most 300 detections per image, the highest scores kept (a stable sort: ties keep file order);
- a detection of a category that is neither annotated in the image nor in its `neg_category_ids` is dropped
  (the image was never checked for it); one in `neg_category_ids` is a false positive when unmatched;
- an unmatched detection of a category in the image's `not_exhaustive_category_ids` is ignored;
- AP is averaged over categories, and APr / APc / APf over the rare / common / frequent ones.

`fixed_ap=True` is the "Fixed AP" of Dave et al. 2021 (Evaluating Large-Vocabulary Object Detectors: The Devil is
in the Details): no per-image cap, but at most 10,000 detections per category over the whole dataset, so a
detector cannot gain by spreading low-scoring guesses over many categories in every image.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from reclip_eval.errors import read_json
from reclip_eval.metrics.lvis_inputs import check_annotations, check_detections, with_federated_defaults

log = logging.getLogger(__name__)

MAX_DETS_PER_IMAGE = 300
FIXED_AP_DETS_PER_CATEGORY = 10_000
# faster-coco-eval's stats_as_dict names -> the names LVIS users read.
METRIC_NAMES = {"AP_all": "AP", "AP_50": "AP50", "AP_75": "AP75", "AP_small": "APs", "AP_medium": "APm",
                "AP_large": "APl", "APr": "APr", "APc": "APc", "APf": "APf"}


def _load(path_or_data: str | Path | list | dict, what: str) -> Any:
    if not isinstance(path_or_data, (str, Path)):
        return path_or_data
    return read_json(path_or_data, what=f"{what} file")


def _source(path_or_data: str | Path | list | dict, what: str) -> str:
    return str(path_or_data) if isinstance(path_or_data, (str, Path)) else what


def top_per_image(detections: list[dict], limit: int = MAX_DETS_PER_IMAGE) -> list[dict]:
    """The `limit` highest-scoring detections of each image (stable: ties keep their order), like lvis-api."""
    by_image: dict[Any, list[dict]] = defaultdict(list)
    for det in detections:
        by_image[det["image_id"]].append(det)
    kept = []
    for dets in by_image.values():
        kept.extend(dets if len(dets) <= limit else sorted(dets, key=lambda d: d["score"], reverse=True)[:limit])
    return kept


def top_per_category(detections: list[dict], limit: int = FIXED_AP_DETS_PER_CATEGORY) -> list[dict]:
    """The `limit` highest-scoring detections of each category over the whole set (Fixed AP)."""
    by_category: dict[Any, list[dict]] = defaultdict(list)
    for det in detections:
        by_category[det["category_id"]].append(det)
    kept = []
    for dets in by_category.values():
        kept.extend(sorted(dets, key=lambda d: d["score"], reverse=True)[:limit])
    return kept


def _kept(detections: list[dict], fixed_ap: bool) -> list[dict]:
    return top_per_category(detections) if fixed_ap else top_per_image(detections)


def detection_counts(ground_truth: dict, detections: list[dict], *, fixed_ap: bool = False) -> dict[str, int]:
    """How many detections were read, cut by the cap, dropped as detections of a category the image was never checked
    for (neither annotated there nor a verified negative: LVIS does not score them), and used by the evaluation."""
    kept = _kept(detections, fixed_ap)
    checked: dict[Any, set] = defaultdict(set)
    for image in ground_truth["images"]:
        checked[image["id"]].update(image.get("neg_category_ids", ()))
    for ann in ground_truth["annotations"]:
        checked[ann["image_id"]].add(ann["category_id"])
    unchecked = sum(d["category_id"] not in checked[d["image_id"]] for d in kept)
    return {"read": len(detections), "over_cap": len(detections) - len(kept), "unchecked_category": unchecked,
            "used": len(kept) - unchecked}


def evaluate_lvis(annotations: str | Path | dict, detections: str | Path | list, iou_type: str = "bbox", *,
                  fixed_ap: bool = False, allow_missing_federated_fields: bool = False) -> dict[str, float]:
    """AP, AP50, AP75, APs, APm, APl, APr, APc, APf (fractions in [0, 1]; -1 where undefined).

    Both inputs are checked first (lvis_inputs.py); an image without the federated fields is an error unless
    `allow_missing_federated_fields`, which reads them as empty lists."""
    from faster_coco_eval import COCO, COCOeval_faster

    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be bbox or segm, got {iou_type!r}")
    ground_truth = _load(annotations, "annotation")
    dets = _load(detections, "detections")
    check_annotations(ground_truth, _source(annotations, "annotations"),
                      allow_missing_federated_fields=allow_missing_federated_fields)
    check_detections(dets, ground_truth, iou_type, _source(detections, "detections"))
    dets = [dict(d) for d in _kept(dets, fixed_ap)]
    gt = COCO(with_federated_defaults(ground_truth))
    max_dets = FIXED_AP_DETS_PER_CATEGORY if fixed_ap else MAX_DETS_PER_IMAGE
    evaluator = COCOeval_faster(gt, gt.loadRes(dets), iou_type, lvis_style=True, print_function=log.debug)
    evaluator.params.maxDets = [max_dets]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    stats = evaluator.stats_as_dict
    return {ours: float(stats[theirs]) for theirs, ours in METRIC_NAMES.items()}
