"""The synthetic world as an LVIS v1 detection set, in the real on-disk layout (the stand-in for LVIS + COCO):

    <out>/shapes-lvis/lvis_v1_train.json    LVIS v1 annotation files: images, annotations, categories
    <out>/shapes-lvis/lvis_v1_val.json
    <out>/shapes-lvis/train2017/<id:012d>.jpg   images, found through each image's `coco_url` (LVIS v1 images have no
    <out>/shapes-lvis/val2017/<id:012d>.jpg     file_name); as in LVIS v1, val images come from both COCO folders
    <out>/shapes-lvis/synth.json            generator manifest

Categories are the 36 colour x shape classes of the zero-shot set (`red_circle`, synonyms from the caption grammar:
`red_disk`). Each has an LVIS frequency assigned by design: 6 rare (one per colour and one per shape, so every
attribute of a rare category is seen in some base category), 12 common, 18 frequent. Rare categories never appear
in a train image, neither annotated nor visible: they are the novel categories of the open-vocabulary protocol
(train on common + frequent, test on all). Frequent ones are drawn 3x as often as common ones in train images, so
`image_count` / `instance_count` (counted over the train split, as in LVIS v1) follow the frequency order. In val
images rare categories are drawn twice as often as the others, so that a small val set measures AP_r.

Images hold 1-5 objects on a square scene, sometimes widened or heightened by a quarter with background (so that the
detector's resize-and-pad path meets non-square images). Each image lists `neg_category_ids` (verified absent) and,
when a category occurs twice and one instance is left unannotated, `not_exhaustive_category_ids`. Masks are the
shapes' exact outlines as polygons (circles with 32 vertices).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from reclip_eval.atomic import atomic_dir
from reclip_eval.data.synth.captions import _SHAPE_WORDS as SHAPE_WORDS
from reclip_eval.data.synth.export import SynthConfig, _jpeg, _noise_seed, _run, _write_manifest
from reclip_eval.data.synth.render import _outline, render_scene
from reclip_eval.data.synth.world import CELLS, COLOURS, SHAPES, SIZES, Scene, sample_object, sample_rng

FOLDER = "shapes-lvis"
LVIS_GENERATOR_VERSION = 1  # bump whenever the same settings would draw another LVIS set
SPLIT_FILES = {"train": "lvis_v1_train.json", "val": "lvis_v1_val.json"}
COCO_URL = "http://images.cocodataset.org/{folder}/{image_id:012d}.jpg"
IMAGE_ID_OFFSET = {"train": 100_000, "val": 200_000}  # ids unique over both splits, as COCO's are
FREQUENT_WEIGHT = 3.0  # train-image draws of a frequent category relative to a common one
RARE_VAL_WEIGHT = 2.0  # val-image draws of a rare category relative to another: ~30% of val objects are novel
OBJECT_COUNT_WEIGHTS = (0.2, 0.3, 0.25, 0.15, 0.1)  # 1..5 objects per image
NEGATIVES_PER_IMAGE = 4
CIRCLE_VERTICES = 32
PLACEMENT_TRIES = 10  # redraws of an object that would overlap another before it is left out
BOUNDING_RADIUS = 1.15  # farthest outline vertex (a triangle's) in units of the size's radius (render.py)


def lvis_categories(seed: int) -> list[dict[str, Any]]:
    """The 36 categories in LVIS v1 form (without counts). The rare ones form a diagonal of the colour x shape grid,
    rotated by `seed`; the two shapes after it in each colour's row are common, the rest frequent."""
    rotation = seed % len(SHAPES)
    categories = []
    for ci, colour in enumerate(COLOURS):
        for si, shape in enumerate(SHAPES):
            offset = (si - ci - rotation) % len(SHAPES)
            frequency = "r" if offset == 0 else "c" if offset in (1, 2) else "f"
            words = list(dict.fromkeys(SHAPE_WORDS[shape]))  # the caption grammar's names for the shape
            synonyms = [f"{colour}_{w.replace(' ', '_')}" for w in words]
            categories.append({
                "id": ci * len(SHAPES) + si + 1, "name": synonyms[0], "synonyms": synonyms,
                "def": f"a {colour} {shape} of the synthetic shapes world, plain, striped or dotted",
                "synset": f"{colour}_{shape}.synth.01", "frequency": frequency,
            })
    return categories


def category_attributes(category_id: int) -> tuple[str, str]:
    """(colour, shape) of a category id of `lvis_categories`."""
    colour, shape = divmod(category_id - 1, len(SHAPES))
    return list(COLOURS)[colour], SHAPES[shape]


def _split_vocabulary(categories: list[dict], split: str) -> tuple[list[dict], np.ndarray]:
    """Categories that may appear in `split` and their draw probabilities."""
    allowed = [c for c in categories if split == "val" or c["frequency"] != "r"]
    if split == "val":
        weights = np.array([RARE_VAL_WEIGHT if c["frequency"] == "r" else 1.0 for c in allowed])
    else:
        weights = np.array([FREQUENT_WEIGHT if c["frequency"] == "f" else 1.0 for c in allowed])
    return allowed, weights / weights.sum()


def _overlap(a, b) -> bool:
    reach = BOUNDING_RADIUS * (SIZES[a.size] + SIZES[b.size])
    return math.hypot(a.cx - b.cx, a.cy - b.cy) < reach


def _circle(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(2 * math.pi * k / CIRCLE_VERTICES), cy + r * math.sin(2 * math.pi * k / CIRCLE_VERTICES))
            for k in range(CIRCLE_VERTICES)]


def _polygon_area(points: list[tuple[float, float]]) -> float:
    """Shoelace formula."""
    total = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True))
    return abs(total) / 2


def _annotation(spec, side: int, offset: tuple[int, int], canvas: tuple[int, int]) -> dict[str, Any]:
    points = _outline(spec, side)
    if points is None:  # a circle
        points = _circle(spec.cx * side, spec.cy * side, SIZES[spec.size] * side)
    width, height = canvas
    # Stars and triangles may poke a pixel out of the scene: clip to the image as annotators' tools do.
    points = [(min(max(x + offset[0], 0.0), width), min(max(y + offset[1], 0.0), height)) for x, y in points]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, y0 = min(xs), min(ys)
    return {"segmentation": [[round(v, 2) for p in points for v in p]],
            "bbox": [round(x0, 2), round(y0, 2), round(max(xs) - x0, 2), round(max(ys) - y0, 2)],
            "area": round(_polygon_area(points), 2)}


def _image_job(args: tuple[Path, int, str, int, int, bool]) -> dict[str, Any]:
    """Draw, render and write image `index` of `split`; returns its LVIS image entry and annotations (no ids)."""
    root, seed, split, index, side, texture = args
    rng = sample_rng(seed, f"lvis-{split}", index)
    categories = lvis_categories(seed)
    allowed, probs = _split_vocabulary(categories, split)
    count = 1 + int(rng.choice(len(OBJECT_COUNT_WEIGHTS), p=OBJECT_COUNT_WEIGHTS))
    cells = [CELLS[i] for i in rng.choice(len(CELLS), size=count, replace=False)]
    sizes = tuple(SIZES) if count == 1 else ("small", "medium") if count <= 3 else ("small",)
    picked = [allowed[i] for i in rng.choice(len(allowed), size=count, p=probs)]
    objects, labels = [], []
    for cell, category in zip(cells, picked, strict=True):
        colour, shape = category_attributes(category["id"])
        for _ in range(PLACEMENT_TRIES):  # masks are modal outlines, so objects must not occlude each other
            spec = sample_object(rng, cell, shape=shape, colour=colour, sizes=sizes, with_texture=texture)
            if not any(_overlap(spec, other) for other in objects):
                objects.append(spec)
                labels.append(category["id"])
                break
    base = 200 + int(rng.integers(0, 46))
    background = tuple(int(np.clip(base + t, 0, 255)) for t in rng.integers(-12, 13, size=3))
    scene = Scene(objects=tuple(objects), background=background)
    # A quarter of the images are widened, a quarter heightened: the scene sits in a larger canvas.
    shape_kind = rng.choice(["square", "square", "wide", "tall"])
    extra = side // 4
    width, height = side + (extra if shape_kind == "wide" else 0), side + (extra if shape_kind == "tall" else 0)
    offset = (int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1)))
    canvas = Image.new("RGB", (width, height), background)
    canvas.paste(render_scene(scene, side, _noise_seed(seed + 1, f"lvis-{split}", index)), offset)
    # Val images come from both COCO folders, as in LVIS v1 (whose val set draws on COCO train2017 and val2017).
    folder = "val2017" if split == "val" and index % 4 == 0 else "train2017"
    image_id = IMAGE_ID_OFFSET[split] + index
    path = root / folder / f"{image_id:012d}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_jpeg(canvas))
    annotations = [{"image_id": image_id, "category_id": label, **_annotation(spec, side, offset, (width, height))}
                   for spec, label in zip(objects, labels, strict=True)]
    not_exhaustive = []
    repeated = [c for c in dict.fromkeys(labels) if labels.count(c) > 1]
    if repeated and rng.random() < 0.5:  # leave one instance unannotated: the category is not exhaustive here
        dropped = max(i for i, label in enumerate(labels) if label == repeated[0])
        annotations.pop(dropped)
        not_exhaustive.append(repeated[0])
    absent = [c["id"] for c in allowed if c["id"] not in labels]
    negatives = sorted(int(c) for c in rng.choice(absent, size=min(NEGATIVES_PER_IMAGE, len(absent)), replace=False))
    image = {"id": image_id, "width": width, "height": height,
             "coco_url": COCO_URL.format(folder=folder, image_id=image_id), "flickr_url": "",
             "date_captured": "2026-01-01 00:00:00", "license": 1,
             "neg_category_ids": negatives, "not_exhaustive_category_ids": not_exhaustive}
    return {"image": image, "annotations": annotations}


def _lvis_json(rows: list[dict[str, Any]], categories: list[dict[str, Any]], split: str,
               first_annotation_id: int) -> dict[str, Any]:
    annotations = []
    for row in rows:
        for ann in row["annotations"]:
            annotations.append({"id": first_annotation_id + len(annotations), **ann})
    return {
        "info": {"description": f"reclip-eval synthetic shapes world, LVIS v1 format ({split})", "version": "1.0",
                 "year": 2026, "contributor": "reclip-eval", "date_created": "2026-01-01"},
        "licenses": [{"id": 1, "name": "CC0 (generated images)", "url": ""}],
        "images": [row["image"] for row in rows],
        "annotations": annotations,
        "categories": categories,
    }


def with_train_counts(categories: list[dict], train_annotations: list[dict]) -> list[dict]:
    """Categories with `image_count` and `instance_count` over the train split (what LVIS v1 files carry)."""
    images: dict[int, set[int]] = {c["id"]: set() for c in categories}
    instances = dict.fromkeys(images, 0)
    for ann in train_annotations:
        images[ann["category_id"]].add(ann["image_id"])
        instances[ann["category_id"]] += 1
    return [{**c, "image_count": len(images[c["id"]]), "instance_count": instances[c["id"]]} for c in categories]


def write_lvis_set(out: Path, config: SynthConfig, workers: int = 1) -> Path:
    target = Path(out) / FOLDER
    counts = {"train": config.lvis_train_images, "val": config.lvis_val_images}
    with atomic_dir(target) as tmp:
        rows = {}
        for split, n in counts.items():
            tasks = [(tmp, config.seed, split, i, config.image_size, config.fine_texture) for i in range(n)]
            rows[split] = _run(_image_job, tasks, workers, f"lvis {split}", n, weight=lambda _: 1)
        categories = lvis_categories(config.seed)
        train = _lvis_json(rows["train"], categories, "train", 1)
        categories = with_train_counts(categories, train["annotations"])
        train["categories"] = categories
        val = _lvis_json(rows["val"], categories, "val", len(train["annotations"]) + 1)
        for split, data in (("train", train), ("val", val)):
            (tmp / SPLIT_FILES[split]).write_text(json.dumps(data))
        _write_manifest(tmp, "lvis", config, {"lvis_generator_version": LVIS_GENERATOR_VERSION,
                                              "categories": len(categories),
                                              "rare": sum(c["frequency"] == "r" for c in categories)})
    return target
