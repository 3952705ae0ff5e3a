"""What every data layout shares: the spec a task YAML gives (`LayoutSpec`), the base classes a layout module
subclasses (one per role: the task data it can feed), and the registry the layout modules register into.

A layout is one module in this package: a subclass of `ClassificationLayout`, `MultilabelLayout`, `RetrievalLayout`
or `DetectionLayout` decorated with `@register_layout`, stating its presence test, its partial-match hint, its
expected-layout text, its reader and its own field rules. `__init__.py` imports the modules; callers use the
functions there, which dispatch through the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from PIL import Image

from reclip_eval.config import Rule
from reclip_eval.data.imagefolder import ClassList, FolderScan
from reclip_eval.data.images import open_found_image, open_image
from reclip_eval.data.retrieval_files import RetrievalSet
from reclip_eval.registry import Registry, unknown_name


class DataLayout:
    """One on-disk layout. Subclasses set `name` and `summary` and override what their layout needs."""

    name: ClassVar[str]
    role: ClassVar[str]  # the task data it feeds: set by the role base classes below
    summary: ClassVar[str]  # what a folder of it holds, for `reclip-eval tasks`
    reads_hub_ids: ClassVar[bool] = False  # whether `--data-dir hf-datasets:ID` can stand for such a folder

    def claims_hub_id(self, hub_id: str) -> bool:
        """Whether this layout is the one for Hub id `hub_id` (chosen before the task's other hub readers)."""
        return False

    def is_present(self, spec: LayoutSpec, folder: Path, num_classes: int | None, class_ids: tuple[str, ...]
                   ) -> bool:
        raise NotImplementedError

    def partial_match(self, spec: LayoutSpec, folder: Path) -> str | None:
        """What exactly is missing from a folder that holds this layout in part (None: nothing to say)."""
        return None

    def expected(self, spec: LayoutSpec, folder: Path) -> str:
        raise NotImplementedError

    def problems(self, spec: LayoutSpec) -> list[str]:
        """The spec's fields this layout needs and misses, each as `key: what is wrong`."""
        return []


class ClassificationLayout(DataLayout):
    role = "classification"

    def read(self, spec: LayoutSpec, folder: Path | str, classes: ClassList) -> ClassificationData:
        raise NotImplementedError


class MultilabelLayout(DataLayout):
    """Images with any number of the task's classes each: items are (image source, 0/1 vector over the classes)."""

    role = "multilabel"

    def read(self, spec: LayoutSpec, folder: Path | str, classes: ClassList) -> ClassificationData:
        raise NotImplementedError


class AnnotationFileLayout(DataLayout):
    """A layout found through its annotation file (`annotations`), which names the images under `images`."""

    def is_present(self, spec, folder, num_classes, class_ids):
        return (folder / spec.annotations).is_file()

    def problems(self, spec):
        return [] if spec.annotations else [f"annotations: required for {self.name}"]


class RetrievalLayout(AnnotationFileLayout):
    role = "retrieval"

    def partial_match(self, spec, folder):
        images = folder / spec.images
        if images.is_dir() and spec.images != "." and not (folder / spec.annotations).is_file():
            return f"{images} exists, but the annotation file {folder / spec.annotations} is missing"
        return None

    def expected(self, spec, folder):
        return f"{folder}/{spec.annotations}  and the images under  {folder}/{spec.images}/"

    def read(self, spec: LayoutSpec, folder: Path) -> RetrievalSet:
        raise NotImplementedError


class DetectionLayout(AnnotationFileLayout):
    """Read by the detection task through reclip_eval.detect (a package above data), so no reader here."""

    role = "detection"


LAYOUTS: Registry[DataLayout] = Registry("data layout")
L = TypeVar("L", bound=type[DataLayout])


def register_layout(cls: L) -> L:
    """Register the decorated layout class under its `name` (one instance serves every spec)."""
    LAYOUTS.register(cls.name)(cls())
    return cls


def layout_names(role: str | None = None) -> list[str]:
    """The registered layouts (of one role, if given), sorted."""
    return [layout.name for layout in LAYOUTS.values() if role is None or layout.role == role]


def _known_layout(kind: str) -> str | None:
    return None if kind in LAYOUTS.names() else str(unknown_name("data layout", kind, LAYOUTS.names()))


@dataclass(frozen=True)
class LayoutSpec:
    """One entry of a task's `data.layouts`: the layout's name and the fields its layout reads."""

    config_rules: ClassVar[tuple[Rule, ...]] = (Rule(("kind",), _known_layout),)

    kind: str  # a registered layout (`reclip-eval tasks` lists them)
    split: str = "val"  # image folder (classification) or split name (karpathy_json, hf_dataset)
    folder_names: Literal["id", "index"] = "id"  # class_folders: class ids or label indices
    labels: str = "LOC_val_solution.csv"  # flat_loc_csv
    devkit: str = "ILSVRC2012_devkit_t12"  # flat_devkit
    annotations: str | None = None  # annotation-file layouts (retrieval, detection): the annotation file
    images: str = "."  # annotation-file layouts: image root, relative to the task folder
    dataset: str = "hf"  # hf_dataset: save_to_disk folder, relative to the task folder
    image_column: str = "image"
    label_column: str = "label"


@dataclass
class ClassificationData:
    items: list[tuple[Any, int]]  # (image source, label)
    empty_classes: list[str]
    load: Callable[[Any], Image.Image] = open_image
    describe_source: Callable[[Any], str] = str  # how a skipped item is named in the results
    files: list[Path] = field(default_factory=list)  # files read besides the items (e.g. shards), fingerprinted
    extra: dict[str, Any] = field(default_factory=dict)  # layout-specific counts for the results

    @classmethod
    def from_scan(cls, scan: FolderScan) -> ClassificationData:
        return cls(scan.items, scan.empty_classes, load=open_found_image)
