"""The on-disk layouts a task can read, one module each in this package, registered by name. A task lists the
layouts it accepts in order of preference (`tasks/*.yaml`, `data.layouts`); the first one present in the task's
folder is used. `reclip-eval tasks` lists the layouts with what a folder of each holds.

A new layout is one module here (a `base.py` role class subclassed and decorated with `@register_layout`) plus its
import below. The functions below are what callers use; they dispatch through the registry.
"""

from __future__ import annotations

from pathlib import Path

from reclip_eval.data.imagefolder import ClassList

# Each layout module registers its layout when imported.
from reclip_eval.data.layouts import (  # noqa: F401
    class_folders,
    clip_benchmark_wds,
    coco_captions,
    flat_devkit,
    flat_loc_csv,
    flickr_txt,
    hf_dataset,
    karpathy_json,
    lvis_json,
)
from reclip_eval.data.layouts.base import (
    LAYOUTS,
    ClassificationData,
    DataLayout,
    LayoutSpec,
    layout_names,
    register_layout,
)
from reclip_eval.data.layouts.hf_dataset import HF_DATASETS_PREFIX
from reclip_eval.data.retrieval_files import RetrievalSet
from reclip_eval.errors import DataError


def layout_of(spec: LayoutSpec) -> DataLayout:
    """The registered layout a spec names (an unknown name: the near-match error)."""
    return LAYOUTS.get(spec.kind)


def _reader(spec: LayoutSpec, role: str) -> DataLayout:
    layout = layout_of(spec)
    if layout.role != role:
        raise DataError(f"layout {spec.kind!r} is not a {role} layout ({', '.join(layout_names(role))})")
    return layout


def is_present(layout: LayoutSpec, folder: Path | str, num_classes: int | None = None,
               class_ids: tuple[str, ...] = ()) -> bool:
    """Does `folder` hold data in this layout? A string is a Hub dataset id, which only some layouts read."""
    if isinstance(folder, str):
        return layout_of(layout).reads_hub_ids
    return layout_of(layout).is_present(layout, folder, num_classes, class_ids)


def partial_match(layout: LayoutSpec, folder: Path) -> str | None:
    """For a layout that is half there (images without their label file, ...), what exactly is missing."""
    return layout_of(layout).partial_match(layout, folder)


def expected_layout(layout: LayoutSpec, folder: Path) -> str:
    return layout_of(layout).expected(layout, folder)


def read_classification(layout: LayoutSpec, folder: Path | str, classes: ClassList) -> ClassificationData:
    return _reader(layout, "classification").read(layout, folder, classes)


def read_multilabel(layout: LayoutSpec, folder: Path | str, classes: ClassList) -> ClassificationData:
    return _reader(layout, "multilabel").read(layout, folder, classes)


def read_retrieval(layout: LayoutSpec, folder: Path) -> RetrievalSet:
    return _reader(layout, "retrieval").read(layout, folder)


__all__ = ["HF_DATASETS_PREFIX", "LAYOUTS", "ClassificationData", "DataLayout", "LayoutSpec", "expected_layout",
           "is_present", "layout_names", "layout_of", "partial_match", "read_classification", "read_multilabel",
           "read_retrieval",
           "register_layout"]
