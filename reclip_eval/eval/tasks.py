"""Task specs (`tasks/NAME.yaml`): what data a task reads, in which layout, with which classes and prompts, and
where that data comes from; other suites' names for the tasks (`tasks/aliases.tsv`: CLIP_benchmark's dataset
names). Locating the data and the "missing data" message live here too."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from reclip_eval.config import Rule, from_dict, load_yaml
from reclip_eval.data.imagefolder import read_class_list
from reclip_eval.data.layouts import (
    HF_DATASETS_PREFIX,
    LAYOUTS,
    LayoutSpec,
    expected_layout,
    is_present,
    layout_of,
    partial_match,
)
from reclip_eval.data.synth.export import WRITERS, SynthConfig, made_by_current_generator, synthesize
from reclip_eval.errors import ConfigError, DataError, UnknownNameError
from reclip_eval.eval.task_kinds import TASK_KINDS, task_kind
from reclip_eval.paths import data_folder, default_data_dir
from reclip_eval.registry import Registry, find_named_yaml, named_yaml_files, unknown_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSpec:
    folder: str  # the task's sub-folder under --data-dir
    layouts: list[LayoutSpec]  # accepted on-disk layouts, most preferred first (reclip_eval/data/layouts/)


def _registered(kind: str, registry: Registry) -> Callable[[str | None], str | None]:
    """A config rule: the value names an entry of `registry` (or is None)."""
    return lambda name: None if name is None or name in registry.names() else str(
        unknown_name(kind, name, registry.names()))


def _known_task(name: str | None) -> str | None:
    tasks = list(named_yaml_files("tasks"))
    return None if name is None or name in tasks else str(unknown_name("task", name, tasks))


@dataclass(frozen=True)
class TaskSpec:
    config_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(("kind",), _registered("task kind", TASK_KINDS)),
        Rule(("synth_set",), _registered("synthetic set", WRITERS)),
        Rule(("twin_of",), _known_task),
    )

    name: str
    kind: str  # a registered task kind (reclip_eval/eval/task_kinds.py; `reclip-eval tasks` lists them)
    description: str
    data: DataSpec
    get_data: str  # where the data comes from, printed when it is missing
    classes: str | None = None  # `id<TAB>name` file, relative to tasks/
    templates: str | None = None  # one prompt template per line with `{}`, relative to tasks/
    # linear_probe: layouts of the training images, looked up in the same folder as `data` (the test images)
    probe_train_layouts: list[LayoutSpec] = field(default_factory=list)
    # Synthetic-world tasks: which set to generate on first use, with which generator settings.
    synth_set: str | None = None  # a synthetic writer (reclip_eval/data/synth/export.py: WRITERS)
    synth: SynthConfig | None = None
    # The real task (a dataset of the paper's tables) this synthetic task stands in for: the leaderboard fills that
    # dataset's paper columns from this task's results, marked as a twin.
    twin_of: str | None = None
    path: str = ""

    def resource(self, relative: str) -> Path:
        return Path(self.path).parent / relative

    def expected_layouts(self, root: Path) -> str:
        base = root / self.data.folder
        return "\n    or ".join(expected_layout(layout, base) for layout in self.data.layouts)

    def spec_sha256(self) -> str:
        return hashlib.sha256(Path(self.path).read_bytes()).hexdigest()


LINEAR_PROBE_PREFIX = "linear-probe:"
ALIASES_FILE = "aliases.tsv"  # in tasks/: other suites' names for the tasks (alias, task, suite), one table
ALIAS_COLUMNS = ("alias", "task", "suite")
ALIAS_HEADER = "\t".join(ALIAS_COLUMNS)


@dataclass(frozen=True)
class TaskAlias:
    alias: str  # e.g. imagenet1k
    task: str  # the task it names, e.g. imagenet
    suite: str  # the suite that uses the name, e.g. CLIP_benchmark


def alias_table() -> list[TaskAlias]:
    """The rows of tasks/aliases.tsv (`#` lines are comments; the first other line is the header). An alias that
    is a task name, is given twice, or names no task is a ConfigError naming the file and line."""
    path = data_folder("tasks") / ALIASES_FILE
    if not path.is_file():
        return []
    tasks = named_yaml_files("tasks")
    rows: dict[str, TaskAlias] = {}
    problems = []
    lines = [(i, line) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if line.strip() and not line.startswith("#")]
    if not lines or lines[0][1].strip() != ALIAS_HEADER:
        raise ConfigError(str(path), [f"the first line must be the header {ALIAS_HEADER!r}"])
    for number, line in lines[1:]:
        fields = line.split("\t")
        where = f"line {number}"
        if len(fields) != len(ALIAS_COLUMNS) or not all(f.strip() for f in fields):
            problems.append(f"{where}: expected {len(ALIAS_COLUMNS)} tab-separated fields "
                            f"({', '.join(ALIAS_COLUMNS)}), got {line!r}")
            continue
        row = TaskAlias(*(f.strip() for f in fields))
        if row.alias in tasks:
            problems.append(f"{where}: {row.alias!r} is a task name; an alias must not shadow a task")
        elif row.alias in rows:
            problems.append(f"{where}: {row.alias!r} is already an alias of {rows[row.alias].task!r}")
        elif row.task not in tasks:
            problems.append(f"{where}: {unknown_name('task', row.task, list(tasks))}")
        else:
            rows[row.alias] = row
    if problems:
        raise ConfigError(str(path), problems)
    return list(rows.values())


def task_aliases() -> dict[str, str]:
    """alias -> task name (tasks/aliases.tsv)."""
    return {row.alias: row.task for row in alias_table()}


def _task_file(name_or_path: str) -> Path:
    """The YAML of a task name, a CLIP_benchmark-style alias or a path; an unknown name lists near matches among
    both names and aliases."""
    try:
        return find_named_yaml("tasks", "task", name_or_path)
    except UnknownNameError:
        aliases, tasks = task_aliases(), named_yaml_files("tasks")
        if name_or_path not in aliases:
            raise unknown_name("task", name_or_path, [*tasks, *aliases]) from None
    log.info("task %s: the task %s (tasks/%s)", name_or_path, aliases[name_or_path], ALIASES_FILE)
    return tasks[aliases[name_or_path]]


def load_task(name_or_path: str) -> TaskSpec:
    """A named task, a task YAML path, or `linear-probe:TASK` (a linear probe on any classification task: its
    images are the test split, training images come from `train/` beside them unless the task says otherwise)."""
    if name_or_path.startswith(LINEAR_PROBE_PREFIX):
        base = load_task(name_or_path[len(LINEAR_PROBE_PREFIX):])
        if task_kind(base.kind).reads != task_kind("linear_probe").reads:
            raise ConfigError(base.path, [f"kind: a linear probe needs a {task_kind('linear_probe').reads} task, "
                                          f"{base.name} is {base.kind}"])
        train = base.probe_train_layouts or [LayoutSpec(kind="class_folders", split="train")]
        return dataclasses.replace(base, name=f"linear-probe-{base.name}", kind="linear_probe",
                                   probe_train_layouts=train)
    path = _task_file(name_or_path)
    spec = from_dict(TaskSpec, {**load_yaml(path), "path": str(path)}, source=str(path))
    problems = []
    if spec.name != path.stem and path.parent == data_folder("tasks"):
        problems.append(f"name: {spec.name!r} must equal the file name {path.stem!r}")
    kind = task_kind(spec.kind)
    problems += kind.validate(spec)
    if (spec.synth_set is None) != (spec.synth is None):
        problems.append("synth_set and synth: give both (a synthetic task) or neither")
    for i, layout in enumerate(spec.data.layouts):
        if layout_of(layout).role != kind.reads:
            problems.append(f"data.layouts[{i}].kind: {layout.kind!r} cannot feed a {spec.kind} task")
        problems += [f"data.layouts[{i}].{problem}" for problem in layout_of(layout).problems(layout)]
    for i, layout in enumerate(spec.probe_train_layouts):
        problems += [f"probe_train_layouts[{i}].{problem}" for problem in layout_of(layout).problems(layout)]
    if not spec.data.layouts:
        problems.append("data.layouts: give at least one layout")
    if problems:
        raise ConfigError(str(path), problems)
    return spec


def list_tasks() -> list[TaskSpec]:
    return [load_task(str(p)) for p in named_yaml_files("tasks").values()]


def synthetic_twins(tasks: list[TaskSpec] | None = None) -> dict[str, str]:
    """real task -> the synthetic task that declares itself its twin (`twin_of`), over the named tasks."""
    twins: dict[str, TaskSpec] = {}
    for task in list_tasks() if tasks is None else tasks:
        if task.twin_of is None:
            continue
        if task.twin_of in twins:
            raise ConfigError(task.path, [f"twin_of: {task.twin_of!r} already has the twin "
                                          f"{twins[task.twin_of].name!r} ({twins[task.twin_of].path})"])
        twins[task.twin_of] = task
    return {real: twin.name for real, twin in twins.items()}


def locate_task_data(spec: TaskSpec, data_dir: Path | str | None, *, workers: int = 1) -> tuple[Path | str, LayoutSpec]:
    """The task's data folder and the layout found there. `data_dir` may be the parent of task folders or the
    task's folder itself, or `hf-datasets:<id>` for a Hub dataset.

    Synthetic tasks are generated on first use into the data root (--data-dir, else the default data dir), and
    regenerated when the folder there was written by another version of the generator or for another world (the
    texture and caption options). A set generated with other settings of the same world (say, more images per
    class) is used as it is: its manifest goes into the results.
    """
    if data_dir is not None and str(data_dir).startswith(HF_DATASETS_PREFIX):
        hub_id = str(data_dir)[len(HF_DATASETS_PREFIX):]
        hf_layouts = sorted((layout for layout in spec.data.layouts if layout_of(layout).reads_hub_ids),
                            key=lambda layout: not layout_of(layout).claims_hub_id(hub_id))  # the id's own first
        if not hf_layouts:
            readers = " or ".join(layout.name for layout in LAYOUTS.values() if layout.reads_hub_ids)
            raise DataError(f"task {spec.name!r} cannot read a Hugging Face dataset (no {readers} layout)")
        return hub_id, hf_layouts[0]
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    class_ids = read_class_list(spec.resource(spec.classes)).ids if spec.classes else ()
    for folder in (root / spec.data.folder, root):
        for layout in spec.data.layouts:
            if (is_present(layout, folder, len(class_ids), class_ids)
                    and (spec.synth is None or made_by_current_generator(folder, spec.synth))):
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
