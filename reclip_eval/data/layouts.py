"""The on-disk layouts a task can read, each a small reader. A task lists the layouts it accepts in order of
preference (`tasks/*.yaml`, `data.layouts`); the first one present in the task's folder is used.

    class_folders   <split>/<class id>/*.jpg           ImageNet val, -Sketch, -A, -R (ids), -V2 (indices)
    flat_loc_csv    <split>/*.JPEG + LOC_val_solution.csv  ImageNet val from the Kaggle download
    flat_devkit     <split>/*.JPEG + ILSVRC2012_devkit_t12/ ImageNet val with the official devkit
    hf_dataset      a `datasets.save_to_disk` folder (or a Hub id via --data-dir hf-datasets:ID)
    karpathy_json   dataset_flickr30k.json / dataset_coco.json + the images they name
    flickr_txt      flickr30k_test_karpathy.txt (CLIP_benchmark) + flickr30k-images/
    coco_captions   coco_test_karpathy.json (COCO captions form, CLIP_benchmark) + val2014/
    lvis_json       lvis_v1_val.json + COCO 2017 image folders found through each image's coco_url
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from reclip_eval.data.imagefolder import ClassList, FolderScan, scan_image_folder
from reclip_eval.data.images import is_image_file, open_found_image, open_image
from reclip_eval.data.retrieval_files import RetrievalSet, read_coco_captions, read_flickr_txt, read_karpathy_json
from reclip_eval.errors import DataError

HF_DATASETS_PREFIX = "hf-datasets:"
CLASSIFICATION_KINDS = ("class_folders", "flat_loc_csv", "flat_devkit", "hf_dataset")
RETRIEVAL_KINDS = ("karpathy_json", "flickr_txt", "coco_captions")
DETECTION_KINDS = ("lvis_json",)


@dataclass(frozen=True)
class LayoutSpec:
    kind: Literal["class_folders", "flat_loc_csv", "flat_devkit", "hf_dataset", "karpathy_json", "flickr_txt",
                  "coco_captions", "lvis_json"]
    split: str = "val"  # image folder (classification) or split name (karpathy_json, hf_dataset)
    folder_names: Literal["id", "index"] = "id"  # class_folders: class ids or label indices
    labels: str = "LOC_val_solution.csv"  # flat_loc_csv
    devkit: str = "ILSVRC2012_devkit_t12"  # flat_devkit
    annotations: str | None = None  # retrieval kinds: the annotation file
    images: str = "."  # retrieval kinds: image root, relative to the task folder
    dataset: str = "hf"  # hf_dataset: save_to_disk folder, relative to the task folder
    image_column: str = "image"
    label_column: str = "label"


@dataclass
class ClassificationData:
    items: list[tuple[Any, int]]  # (image source, label)
    empty_classes: list[str]
    load: Callable[[Any], Image.Image] = open_image
    describe_source: Callable[[Any], str] = str  # how a skipped item is named in the results

    @classmethod
    def from_scan(cls, scan: FolderScan) -> ClassificationData:
        return cls(scan.items, scan.empty_classes, load=open_found_image)


def is_present(layout: LayoutSpec, folder: Path | str, num_classes: int | None = None,
               class_ids: tuple[str, ...] = ()) -> bool:
    """Does `folder` hold data in this layout? For class folders at least one sub-folder must be named like a
    class of the task (so a data root full of other tasks' folders is not mistaken for one)."""
    if isinstance(folder, str):  # a Hub dataset id
        return layout.kind == "hf_dataset"
    k = layout.kind
    if k == "class_folders":
        split = folder / layout.split
        if not split.is_dir():
            return False
        names = set(class_ids) if layout.folder_names == "id" else {str(i) for i in range(num_classes or 0)}
        return any(p.is_dir() and (not names or p.name in names) for p in split.iterdir())
    if k == "flat_loc_csv":
        return (folder / layout.split).is_dir() and (folder / layout.labels).is_file()
    if k == "flat_devkit":
        return (folder / layout.split).is_dir() and (folder / layout.devkit).is_dir()
    if k == "hf_dataset":
        return (folder / layout.dataset).is_dir()
    return (folder / layout.annotations).is_file()


def partial_match(layout: LayoutSpec, folder: Path) -> str | None:
    """For a layout that is half there (images without their label file, ...), what exactly is missing."""
    split = folder / layout.split
    k = layout.kind
    if k in ("flat_loc_csv", "flat_devkit") and split.is_dir():
        images = sum(1 for p in split.iterdir() if p.is_file() and is_image_file(p))
        needed = folder / (layout.labels if k == "flat_loc_csv" else layout.devkit)
        if images and not needed.exists():
            return f"{split} holds {images} images in one flat folder, but their labels ({needed}) are missing"
    if k == "class_folders" and split.is_dir() and folder.name != split.name:
        return f"{split} exists but none of its sub-folders is named after a class of this task"
    if k in RETRIEVAL_KINDS and (folder / layout.images).is_dir() and layout.images != ".":
        if not (folder / layout.annotations).is_file():
            return f"{folder / layout.images} exists, but the annotation file {folder / layout.annotations} is missing"
    return None


def expected_layout(layout: LayoutSpec, folder: Path) -> str:
    k = layout.kind
    if k == "class_folders":
        names = "<class id>" if layout.folder_names == "id" else "<class index 0..N-1>"
        return f"{folder}/{layout.split}/{names}/<image>.jpg"
    if k == "flat_loc_csv":
        return f"{folder}/{layout.split}/<image>.JPEG  with labels in  {folder}/{layout.labels}"
    if k == "flat_devkit":
        return f"{folder}/{layout.split}/<image>.JPEG  with labels in  {folder}/{layout.devkit}/data/"
    if k == "hf_dataset":
        return (f"{folder}/{layout.dataset}/  (datasets.save_to_disk, split {layout.split!r}, columns "
                f"{layout.image_column!r}/{layout.label_column!r}); or --data-dir {HF_DATASETS_PREFIX}<hub id>")
    if k == "lvis_json":
        images = folder / layout.images
        return (f"{folder}/{layout.annotations}  with COCO 2017 images in  {images}/train2017/  and  {images}/val2017/"
                "  (each image's coco_url names its folder)")
    return f"{folder}/{layout.annotations}  and the images under  {folder}/{layout.images}/"


def read_classification(layout: LayoutSpec, folder: Path | str, classes: ClassList) -> ClassificationData:
    k = layout.kind
    if k == "class_folders":
        return ClassificationData.from_scan(scan_image_folder(folder / layout.split, classes, layout.folder_names))
    if k in ("flat_loc_csv", "flat_devkit"):
        from reclip_eval.data.imagenet_flat import read_devkit, read_loc_val_solution, scan_flat_folder

        split = folder / layout.split
        if k == "flat_loc_csv":
            source = folder / layout.labels
            labels = read_loc_val_solution(source)
        else:
            source = folder / layout.devkit
            labels = read_devkit(source, [p.stem for p in split.iterdir() if p.is_file() and is_image_file(p)])
        return ClassificationData.from_scan(scan_flat_folder(split, labels, classes, source))
    if k == "hf_dataset":
        from reclip_eval.data.hf_dataset import HFImageLoader, hf_items, load_hf_split

        source = folder if isinstance(folder, str) else str(folder / layout.dataset)
        dataset = load_hf_split(source, layout.split)
        items = hf_items(dataset, layout.image_column, layout.label_column, len(classes.ids))
        seen = {label for _, label in items}
        return ClassificationData(items, [c for i, c in enumerate(classes.ids) if i not in seen],
                                  load=HFImageLoader(dataset, layout.image_column),
                                  describe_source=lambda row: f"{source}[{row}]")
    raise DataError(f"layout {k!r} is not a classification layout ({', '.join(CLASSIFICATION_KINDS)})")


def read_retrieval(layout: LayoutSpec, folder: Path) -> RetrievalSet:
    annotations, images = folder / layout.annotations, folder / layout.images
    if layout.kind == "karpathy_json":
        return read_karpathy_json(annotations, images, split=layout.split)
    if layout.kind == "flickr_txt":
        return read_flickr_txt(annotations, images)
    if layout.kind == "coco_captions":
        return read_coco_captions(annotations, images)
    raise DataError(f"layout {layout.kind!r} is not a retrieval layout ({', '.join(RETRIEVAL_KINDS)})")
