"""Task specs (`tasks/NAME.yaml`): what data a task reads, in which layout, with which classes and prompts, and
where that data comes from. Locating the data and the "missing data" message live here too."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from reclip_eval.config import from_dict, load_yaml
from reclip_eval.data.imagefolder import read_class_list
from reclip_eval.data.layouts import (
    CLASSIFICATION_KINDS,
    DETECTION_KINDS,
    HF_DATASETS_PREFIX,
    RETRIEVAL_KINDS,
    LayoutSpec,
    expected_layout,
    is_present,
    partial_match,
)
from reclip_eval.data.synth.export import SynthConfig, made_by_current_generator, synthesize
from reclip_eval.errors import ConfigError, DataError
from reclip_eval.paths import data_folder, default_data_dir
from reclip_eval.registry import find_named_yaml, named_yaml_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSpec:
    folder: str  # the task's sub-folder under --data-dir
    layouts: list[LayoutSpec]  # accepted on-disk layouts, most preferred first (reclip_eval/data/layouts.py)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: Literal["zeroshot_classification", "retrieval", "linear_probe", "detection"]
    description: str
    data: DataSpec
    get_data: str  # where the data comes from, printed when it is missing
    classes: str | None = None  # `id<TAB>name` file, relative to tasks/
    templates: str | None = None  # one prompt template per line with `{}`, relative to tasks/
    # linear_probe: layouts of the training images, looked up in the same folder as `data` (the test images)
    probe_train_layouts: list[LayoutSpec] = field(default_factory=list)
    # Synthetic-world tasks: which set to generate on first use, with which generator settings.
    synth_set: Literal["zeroshot", "zeroshot-v2", "zeroshot-sketch", "zeroshot-r", "zeroshot-a", "probe",
                       "retrieval", "lvis"] | None = None
    synth: SynthConfig | None = None
    path: str = ""

    def resource(self, relative: str) -> Path:
        return Path(self.path).parent / relative

    def expected_layouts(self, root: Path) -> str:
        base = root / self.data.folder
        return "\n    or ".join(expected_layout(layout, base) for layout in self.data.layouts)

    def spec_sha256(self) -> str:
        return hashlib.sha256(Path(self.path).read_bytes()).hexdigest()


LINEAR_PROBE_PREFIX = "linear-probe:"


def load_task(name_or_path: str) -> TaskSpec:
    """A named task, a task YAML path, or `linear-probe:TASK` (a linear probe on any classification task: its
    images are the test split, training images come from `train/` beside them unless the task says otherwise)."""
    if name_or_path.startswith(LINEAR_PROBE_PREFIX):
        base = load_task(name_or_path[len(LINEAR_PROBE_PREFIX):])
        if base.kind in ("retrieval", "detection"):
            raise ConfigError(base.path, [f"kind: a linear probe needs a classification task, {base.name} is "
                                          f"{base.kind}"])
        train = base.probe_train_layouts or [LayoutSpec(kind="class_folders", split="train")]
        return dataclasses.replace(base, name=f"linear-probe-{base.name}", kind="linear_probe",
                                   probe_train_layouts=train)
    path = find_named_yaml("tasks", "task", name_or_path)
    spec = from_dict(TaskSpec, {**load_yaml(path), "path": str(path)}, source=str(path))
    problems = []
    if spec.name != path.stem and path.parent == data_folder("tasks"):
        problems.append(f"name: {spec.name!r} must equal the file name {path.stem!r}")
    if spec.kind == "zeroshot_classification" and not (spec.classes and spec.templates):
        problems.append("classes and templates: required for zeroshot_classification")
    if spec.kind == "linear_probe" and not (spec.classes and spec.probe_train_layouts):
        problems.append("classes and probe_train_layouts: required for linear_probe")
    if (spec.synth_set is None) != (spec.synth is None):
        problems.append("synth_set and synth: give both (a synthetic task) or neither")
    kinds = {"retrieval": RETRIEVAL_KINDS, "detection": DETECTION_KINDS}.get(spec.kind, CLASSIFICATION_KINDS)
    for i, layout in enumerate(spec.data.layouts):
        if layout.kind not in kinds:
            problems.append(f"data.layouts[{i}].kind: {layout.kind!r} cannot feed a {spec.kind} task")
        if layout.kind in RETRIEVAL_KINDS + DETECTION_KINDS and not layout.annotations:
            problems.append(f"data.layouts[{i}].annotations: required for {layout.kind}")
    if not spec.data.layouts:
        problems.append("data.layouts: give at least one layout")
    if problems:
        raise ConfigError(str(path), problems)
    return spec


def list_tasks() -> list[TaskSpec]:
    return [load_task(str(p)) for p in named_yaml_files("tasks").values()]


def locate_task_data(spec: TaskSpec, data_dir: Path | str | None, *, workers: int = 1) -> tuple[Path | str, LayoutSpec]:
    """The task's data folder and the layout found there. `data_dir` may be the parent of task folders or the
    task's folder itself, or `hf-datasets:<id>` for a Hub dataset.

    Synthetic tasks are generated on first use into the data root (--data-dir, else the default data dir), and
    regenerated when the folder there was written by another version of the generator. A set generated with
    other settings (say, more images per class) is used as it is: its manifest goes into the results.
    """
    if data_dir is not None and str(data_dir).startswith(HF_DATASETS_PREFIX):
        hf_layouts = [layout for layout in spec.data.layouts if layout.kind == "hf_dataset"]
        if not hf_layouts:
            raise DataError(f"task {spec.name!r} cannot read a Hugging Face dataset (no hf_dataset layout)")
        return str(data_dir)[len(HF_DATASETS_PREFIX):], hf_layouts[0]
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    class_ids = read_class_list(spec.resource(spec.classes)).ids if spec.classes else ()
    for folder in (root / spec.data.folder, root):
        for layout in spec.data.layouts:
            if (is_present(layout, folder, len(class_ids), class_ids)
                    and (spec.synth is None or made_by_current_generator(folder))):
                return folder, layout
    if spec.synth is not None and spec.synth_set is not None:
        log.info("generating the synthetic %s set for task %s under %s", spec.synth_set, spec.name, root)
        synthesize(root, spec.synth, sets=[spec.synth_set], workers=workers)
        return root / spec.data.folder, spec.data.layouts[0]
    hints = sorted({h for folder in (root / spec.data.folder, root) if folder.is_dir()
                    for h in (partial_match(layout, folder) for layout in spec.data.layouts) if h})
    found = "".join(f"  found: {h}\n" for h in hints)
    raise DataError(
        f"task {spec.name!r}: data not found under {root}.\n{found}"
        f"  expected layout:\n    {spec.expected_layouts(root)}\n"
        f"  where to get it: {spec.get_data}\n"
        f"  (--data-dir DIR or $RECLIP_DATA sets the data root; it may also point at the task folder itself)"
    )
