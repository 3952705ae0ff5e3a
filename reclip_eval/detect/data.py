"""LVIS v1 data as users have it: the annotation JSON and the COCO 2017 image folders, each image found through its
`coco_url` (LVIS v1 val draws on both COCO train2017 and val2017, and its images have no `file_name`).

Training reads base categories only (open-vocabulary protocol of ViLD / F-VLM / RO-ViT: LVIS frequent + common;
rare annotations and rare names removed), with large-scale jitter (ViTDet, Li et al. 2022; F-VLM, Kuo et al.
2023): resize by a random factor in [0.1, 2.0] of the square canvas, random crop or pad to the canvas, random
horizontal flip. Padding is the normalisation mean, which is what torchvision pads with at inference.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from reclip_eval.detect.vocabulary import Category, categories_from_json
from reclip_eval.errors import DataError, read_json

LVIS_SOURCE = ("LVIS v1 annotations from https://www.lvisdataset.org/dataset (lvis_v1_train.json, lvis_v1_val.json); "
               "images are COCO 2017: http://images.cocodataset.org/zips/train2017.zip and val2017.zip")
LOAD_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)


def expected_lvis_layout(annotations: Path, images: Path) -> str:
    return (f"{annotations}\n    {images}/train2017/<image id, 12 digits>.jpg\n    {images}/val2017/<image id>.jpg"
            "\n  (each image's coco_url names its folder: LVIS v1 val uses both)")


@dataclass
class LvisSet:
    """An LVIS annotation file and the image root its `coco_url`s resolve under."""

    path: Path
    image_root: Path
    images: list[dict[str, Any]]
    categories: list[Category]
    annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # by image id
    raw: dict[str, Any] = field(default_factory=dict)

    def image_path(self, image: dict[str, Any]) -> Path:
        url = image.get("coco_url")
        if url:
            folder, name = urlparse(url).path.split("/")[-2:]
            return self.image_root / folder / name
        if image.get("file_name"):  # COCO-style files (and LVIS v0.5) name the file directly
            return self.image_root / image["file_name"]
        raise DataError(f"{self.path}: image {image.get('id')} has neither coco_url nor file_name")


def read_lvis(annotations: str | Path, images: str | Path) -> LvisSet:
    """Read an LVIS v1 annotation file; a missing file or image folder is a DataError with the expected layout."""
    annotations, images = Path(annotations).expanduser(), Path(images).expanduser()
    if not annotations.is_file():
        raise DataError(f"{annotations}: LVIS annotation file not found.\n  expected layout:\n    "
                        f"{expected_lvis_layout(annotations, images)}\n  where to get it: {LVIS_SOURCE}")
    raw = read_json(annotations)
    if not isinstance(raw, dict) or not {"images", "annotations", "categories"} <= set(raw):
        raise DataError(f"{annotations}: not an LVIS annotation file (needs images, annotations, categories)")
    lvis = LvisSet(annotations, images, raw["images"], categories_from_json(raw, str(annotations)), raw=raw)
    by_image: dict[int, list[dict]] = defaultdict(list)
    known = {c.id for c in lvis.categories}
    for ann in raw["annotations"]:
        if ann["category_id"] not in known:
            raise DataError(f"{annotations}: annotation {ann.get('id')} has category id {ann['category_id']}, "
                            "which is not in the file's categories")
        by_image[ann["image_id"]].append(ann)
    lvis.annotations = dict(by_image)
    folders = sorted({lvis.image_path(i).parent for i in lvis.images})
    missing = [f for f in folders if not f.is_dir()]
    if missing and len(missing) == len(folders):
        raise DataError(f"{annotations}: the images it names are missing (no {', '.join(map(str, missing))}).\n"
                        f"  expected layout:\n    {expected_lvis_layout(annotations, images)}\n"
                        f"  where to get it: {LVIS_SOURCE}")
    return lvis


def check_category_ids(category_ids: set[int] | list[int], lvis: LvisSet, what: str = "detections") -> None:
    """A category id the annotations do not have is an error naming it."""
    unknown = sorted(set(category_ids) - {c.id for c in lvis.categories})
    if unknown:
        raise DataError(f"{what}: category id(s) {unknown[:10]} are not in {lvis.path}'s categories "
                        f"(ids {lvis.categories[0].id}..{lvis.categories[-1].id})")


def load_rgb(path: Path) -> torch.Tensor:
    """(3, H, W) float in [0, 1]."""
    with Image.open(path) as image:
        image.load()
        return TF.to_dtype(TF.pil_to_tensor(image.convert("RGB")), torch.float32, scale=True)


def polygons_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """LVIS segmentation (polygons or RLE) -> (H, W) uint8."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle)


def large_scale_jitter(image: torch.Tensor, boxes: torch.Tensor, masks: torch.Tensor, size: int,
                       scale_range: tuple[float, float], fill: tuple[float, float, float],
                       generator: torch.Generator | None = None):
    """Resize so the image fits `size * s` (s ~ U(scale_range)), random crop / pad to size x size, random flip.
    boxes (K, 4) xyxy; masks (K, H, W) uint8. Returns the canvas, boxes clipped to it and masks, and `keep`
    (the objects still at least one pixel wide and high)."""
    height, width = image.shape[-2:]
    scale = float(torch.empty(1).uniform_(*scale_range, generator=generator)) * size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)[0]
    masks = F.interpolate(masks[None].float(), size=(new_h, new_w), mode="nearest")[0].to(torch.uint8) \
        if len(masks) else masks.new_zeros((0, new_h, new_w))
    boxes = boxes * torch.tensor([new_w / width, new_h / height] * 2)
    top = int(torch.randint(0, max(new_h - size, 0) + 1, (1,), generator=generator))
    left = int(torch.randint(0, max(new_w - size, 0) + 1, (1,), generator=generator))
    image, masks = image[:, top:top + size, left:left + size], masks[:, top:top + size, left:left + size]
    boxes = boxes - torch.tensor([left, top, left, top], dtype=boxes.dtype)
    canvas = torch.tensor(fill, dtype=image.dtype).view(3, 1, 1).expand(3, size, size).clone()
    canvas[:, : image.shape[1], : image.shape[2]] = image
    full_masks = masks.new_zeros((len(masks), size, size))
    full_masks[:, : masks.shape[1], : masks.shape[2]] = masks
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image.shape[2])
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image.shape[1])
    if float(torch.rand(1, generator=generator)) < 0.5:
        canvas, full_masks = canvas.flip(-1), full_masks.flip(-1)
        boxes = torch.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], dim=1)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
    return canvas, boxes, full_masks, keep


class LvisTrainDataset(Dataset):
    """Images with at least one annotation of the training vocabulary -> (canvas (3, S, S), target) with labels
    1..C in vocabulary order. Other categories' annotations are removed."""

    def __init__(self, lvis: LvisSet, vocabulary: list[Category], image_size: int,
                 scale_range: tuple[float, float], fill: tuple[float, float, float]):
        self.lvis = lvis
        self.label_of = {c.id: i + 1 for i, c in enumerate(vocabulary)}
        self.images = [img for img in lvis.images
                       if any(a["category_id"] in self.label_of for a in lvis.annotations.get(img["id"], []))]
        if not self.images:
            raise DataError(f"{lvis.path}: no image has an annotation of the training categories")
        self.image_size, self.scale_range, self.fill = image_size, scale_range, fill

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        info = self.images[index]
        try:
            image = load_rgb(self.lvis.image_path(info))
        except LOAD_ERRORS as e:
            return None, {"image_id": info["id"], "error": f"{type(e).__name__}: {e}"}
        height, width = image.shape[-2:]
        anns = [a for a in self.lvis.annotations.get(info["id"], []) if a["category_id"] in self.label_of]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=torch.float32)
        masks = torch.from_numpy(np.stack([polygons_to_mask(a["segmentation"], height, width) for a in anns]))
        labels = torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64)
        canvas, boxes, masks, keep = large_scale_jitter(image, boxes, masks, self.image_size, self.scale_range,
                                                        self.fill)
        return canvas, {"boxes": boxes[keep], "labels": labels[keep], "masks": masks[keep], "image_id": info["id"]}


class LvisImageDataset(Dataset):
    """Every image of the set, unresized: (pixels (3, H, W) in [0, 1] or None, image id, error or None)."""

    def __init__(self, lvis: LvisSet):
        self.lvis = lvis

    def __len__(self) -> int:
        return len(self.lvis.images)

    def __getitem__(self, index: int):
        info = self.lvis.images[index]
        try:
            return load_rgb(self.lvis.image_path(info)), info["id"], None
        except LOAD_ERRORS as e:
            return None, info["id"], f"{type(e).__name__}: {e}"


def collate_lists(batch):
    return tuple(zip(*batch, strict=True))
