"""Run a trained detector over an LVIS-format set and write detections in the standard LVIS/COCO results format:
`[{image_id, category_id, bbox: [x, y, w, h], score, segmentation: RLE}]`, at most `detections_per_image` per image
(LVIS: 300). Every category of the annotation file is in the vocabulary; those the detector was not trained on
are novel and get F-VLM's novel-category weight (beta) in the score ensemble."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from reclip_eval.detect.adapter import DetectorAdapter
from reclip_eval.detect.checkpoint import LoadedDetector
from reclip_eval.detect.data import LvisImageDataset, LvisSet, check_category_ids, collate_lists
from reclip_eval.detect.vocabulary import text_embeddings
from reclip_eval.metrics.lvis import evaluate_lvis

log = logging.getLogger(__name__)
MASK_THRESHOLD = 0.5


@dataclass
class Predictions:
    detections: list[dict[str, Any]]
    images_total: int
    images_evaluated: int
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    novel_categories: int = 0


def encode_masks(masks: torch.Tensor) -> list[dict[str, Any]]:
    """(N, H, W) bool -> COCO RLE dicts with string counts (JSON-ready)."""
    from pycocotools import mask as mask_utils

    if not len(masks):
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.permute(1, 2, 0).cpu().numpy().astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def set_lvis_vocabulary(loaded: LoadedDetector, lvis: LvisSet) -> int:
    """Score against every category of `lvis`; returns how many are novel (not in the training vocabulary)."""
    base = set(loaded.base_vocabulary)
    novel = torch.tensor([c.name not in base for c in lvis.categories], dtype=torch.bool)
    embeddings = text_embeddings(loaded.clip, lvis.categories, loaded.templates, loaded.clip_sha256)
    loaded.detector.set_vocabulary(embeddings, novel)
    return int(novel.sum())


def predict_lvis(loaded: LoadedDetector, lvis: LvisSet, *, batch_size: int = 4, workers: int = 0,
                 device: str = "cpu", precision: str = "fp32", with_masks: bool = True) -> Predictions:
    """`predict_with` the detector at `loaded`, placed on `device` at `precision`."""
    adapter = DetectorAdapter(loaded, str(loaded.path or "detector")).place(device, precision)
    return predict_with(adapter, lvis, batch_size=batch_size, workers=workers, with_masks=with_masks)


@torch.no_grad()
def predict_with(adapter: DetectorAdapter, lvis: LvisSet, *, batch_size: int = 4, workers: int = 0,
                 with_masks: bool = True) -> Predictions:
    """Detections on every image of `lvis` by the detector behind `adapter`, at the adapter's placement."""
    loaded = adapter.loaded
    loaded.detector.eval()
    novel = set_lvis_vocabulary(loaded, lvis)
    category_ids = [c.id for c in lvis.categories]
    loader = DataLoader(LvisImageDataset(lvis), batch_size=batch_size, num_workers=workers, collate_fn=collate_lists)
    detections: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    evaluated = 0
    paths = {img["id"]: str(lvis.image_path(img)) for img in lvis.images}
    for images, image_ids, errors in loader:
        skipped += [{"path": paths[i], "reason": e} for i, e in zip(image_ids, errors, strict=True) if e]
        good = [k for k, image in enumerate(images) if image is not None]
        if not good:
            continue
        outputs = adapter.detect([images[k] for k in good])
        for k, output in zip(good, outputs, strict=True):
            evaluated += 1
            boxes = output["boxes"].float().cpu()
            xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
            scores, labels = output["scores"].float().cpu().tolist(), output["labels"].cpu().tolist()
            rles = encode_masks(output["masks"][:, 0] > MASK_THRESHOLD) if with_masks else [None] * len(scores)
            for box, score, label, rle in zip(xywh, scores, labels, rles, strict=True):
                det = {"image_id": image_ids[k], "category_id": category_ids[label - 1],
                       "bbox": [round(v, 2) for v in box], "score": round(score, 6)}
                if rle is not None:
                    det["segmentation"] = rle
                detections.append(det)
    if skipped:
        log.warning("%d of %d images could not be read (listed in the results)", len(skipped), len(lvis.images))
    check_category_ids({d["category_id"] for d in detections}, lvis)
    return Predictions(detections, len(lvis.images), evaluated, skipped, novel)


def evaluate_predictions(lvis: LvisSet, detections: list[dict[str, Any]]) -> dict[str, float]:
    """Mask AP metrics unprefixed (the paper's Table 4 reports mask AP and AP_r), box AP metrics as `box_*`."""
    metrics = {}
    iou_types = ["segm", "bbox"] if detections and "segmentation" in detections[0] else ["bbox"]
    for iou in iou_types:
        prefix = "" if iou == "segm" else "box_"
        metrics.update({prefix + k: v for k, v in evaluate_lvis(lvis.raw, detections, iou).items()})
    return metrics
