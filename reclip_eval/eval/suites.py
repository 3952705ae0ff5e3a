"""Suites: named lists of tasks with the upstream's main metric and averages (`tasks/suites/NAME.yaml`: DataComp's
38 scored tasks, CLIP_benchmark's collections; the file's header comment gives the format, and
scripts/make_suite_tasks.py writes them from the upstreams' own files). `--task datacomp` runs a suite's tasks; the
evaluation's summary table and the suite leaderboard show each task's score and the suite's averages.

A task's score is the mean of its `metric` keys in its results (DataComp's `mean_recall@1` for retrieval is the
mean of i2t_R@1 and t2i_R@1). An entry without a task, or `refused`, is never run and never given a number.

An average is computed the way DataComp's `aggregate_scores.py` computes its own: the plain mean of the member
tasks' scores, and only when every member has one (DataComp refuses a results file without all 38 scored tasks;
a mean over whichever tasks happen to be there would be another number under the same name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reclip_eval.config import from_dict, load_yaml
from reclip_eval.errors import ConfigError, ReclipError, RefusedTaskError, UnknownNameError
from reclip_eval.eval.tasks import TaskSpec, load_task, task_aliases, task_files
from reclip_eval.paths import data_folder
from reclip_eval.registry import unknown_name

SUITES_FOLDER = "suites"  # under tasks/
# CLIP_benchmark's collection names (`clip_benchmark eval --dataset vtab`: its builder.py dataset_collection) for the
# suites holding them; its sugar_crepe collection is a compositionality benchmark no task kind here reads.
CLIP_BENCHMARK_COLLECTIONS = {"vtab": "clip_benchmark_vtab", "vtab+": "clip_benchmark_vtab_plus",
                              "imagenet_robustness": "clip_benchmark_imagenet_robustness",
                              "retrieval": "clip_benchmark_retrieval"}


class SuiteResultsError(ReclipError):
    """A results file lacks a metric its suite scores the task by."""


@dataclass(frozen=True)
class SuiteSource:
    repo: str
    commit: str
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SuiteTask:
    task: str | None  # our task (a name, alias, or a task YAML path relative to the suite file); None: none exists
    key: str  # the upstream's key (DataComp: vtab/caltech101)
    title: str  # the upstream's display name (DataComp: Caltech-101)
    main_metric: str | None  # the upstream's name of its main metric
    metric: list[str] | None  # our metric keys; the score is their mean (None: no score, or a refused entry)
    tags: list[str] = field(default_factory=list)
    refused: str | None = None  # why the entry cannot be scored here

    @property
    def member_name(self) -> str:
        """How `averages` names this entry: the task, or the upstream key where no task exists."""
        return self.task if self.task is not None else self.key

    @property
    def runnable(self) -> bool:
        return self.task is not None and self.refused is None


@dataclass(frozen=True)
class Unscored:
    key: str
    title: str
    why: str


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    source: SuiteSource
    tasks: list[SuiteTask]
    unscored: list[Unscored] = field(default_factory=list)
    averages: dict[str, list[str]] = field(default_factory=dict)  # name -> member names (SuiteTask.member_name)
    path: str = ""

    def task_ref(self, entry: SuiteTask) -> str:
        """What load_task reads for `entry` (one with a task): a YAML beside the suite file, or the task's name."""
        if entry.task is None:
            raise ValueError(f"{self.path}: {entry.key} has no task")  # a caller's bug: only runnable entries ask
        relative = Path(self.path).parent / entry.task
        return str(relative) if entry.task.endswith((".yaml", ".yml")) and relative.is_file() else entry.task

    def runnable(self) -> list[tuple[SuiteTask, TaskSpec]]:
        """The entries evaluated, with their task specs, in the suite's order."""
        return [(entry, load_task(self.task_ref(entry))) for entry in self.tasks if entry.runnable]


def suite_files() -> dict[str, Path]:
    """name -> path of every suite file (tasks/suites/*.yaml), and CLIP_benchmark's collection names -> theirs."""
    root = data_folder("tasks") / SUITES_FOLDER
    files = {p.stem: p for p in sorted(root.glob("*.yaml"))} if root.is_dir() else {}
    return {**files, **{alias: files[name] for alias, name in CLIP_BENCHMARK_COLLECTIONS.items() if name in files}}


def is_suite(name_or_path: str) -> bool:
    """A suite's name, or a path to a YAML file that is one (it lists `tasks:`, which a task YAML does not)."""
    if name_or_path in suite_files():
        return True
    path = Path(name_or_path).expanduser()
    return path.suffix in (".yaml", ".yml") and path.is_file() and "tasks" in load_yaml(path)


def load_suite(name_or_path: str) -> Suite:
    """A named suite (tasks/suites/) or a suite YAML path; every problem of the file in one ConfigError."""
    files = suite_files()
    if not is_suite(name_or_path):
        raise unknown_name("suite", name_or_path, list(files))
    path = files.get(name_or_path) or Path(name_or_path).expanduser()
    suite = from_dict(Suite, {**load_yaml(path), "path": str(path)}, source=str(path))
    problems = []
    if name_or_path in files and suite.name != path.stem:
        problems.append(f"name: {suite.name!r} must equal the file name {path.stem!r}")
    if not suite.tasks:
        problems.append("tasks: give at least one task")
    seen: dict[str, int] = {}
    for i, entry in enumerate(suite.tasks):
        if entry.member_name in seen:
            problems.append(f"tasks[{i}]: {entry.member_name!r} is listed already (tasks[{seen[entry.member_name]}])")
        seen[entry.member_name] = i
        if entry.refused is None and entry.task is None:
            problems.append(f"tasks[{i}]: no task and no reason (refused) for {entry.key!r}")
        if entry.refused is None and entry.main_metric is not None and not entry.metric:
            problems.append(f"tasks[{i}].metric: the keys scoring {entry.main_metric!r} are missing")
        if entry.runnable:
            try:
                load_task(suite.task_ref(entry))
            except (UnknownNameError, ConfigError, RefusedTaskError) as e:
                problems.append(f"tasks[{i}].task: {str(e).splitlines()[0]}")
    for name, members in suite.averages.items():
        unknown = [m for m in members if m not in seen]
        if unknown:
            problems.append(f"averages.{name}: {', '.join(unknown)} is no entry of tasks")
        unscored = [m for m in members if m in seen and suite.tasks[seen[m]].main_metric is None]
        if unscored:
            problems.append(f"averages.{name}: {', '.join(unscored)} has no main metric to average")
        if not members:
            problems.append(f"averages.{name}: no tasks")
    if problems:
        raise ConfigError(str(path), problems)
    return suite


@dataclass(frozen=True)
class TaskPlan:
    """What `--task` names: the tasks to run, in order without repeats, and the suites among the names."""

    tasks: list[TaskSpec]
    suites: list[Suite]

    def not_run(self) -> list[str]:
        """One line per suite entry that is not evaluated, with why."""
        return [f"{suite.name}: {entry.title} ({entry.key}) not evaluated: {entry.refused}"
                for suite in self.suites for entry in suite.tasks if not entry.runnable]


def plan_tasks(value: str) -> TaskPlan:
    """`--task a,b,SUITE`: each comma-separated name a task (name, alias or YAML path) or a suite, whose runnable
    tasks it stands for. A name that is both a task and a suite is refused rather than guessed."""
    tasks: dict[str, TaskSpec] = {}
    suites = []
    for name in filter(None, (part.strip() for part in value.split(","))):
        if is_suite(name):
            if name in task_files() or name in task_aliases():
                raise ConfigError(str(suite_files().get(name, name)),
                                  [f"name: {name!r} is also a task; rename one of them"])
            suite = load_suite(name)
            suites.append(suite)
            specs = [spec for _, spec in suite.runnable()]
        else:
            try:
                specs = [load_task(name)]
            except UnknownNameError:
                known = [*task_files(), *task_aliases(), *suite_files()]
                raise unknown_name("task or suite", name, known) from None
        for spec in specs:
            tasks.setdefault(spec.name, spec)
    if not tasks:
        raise ConfigError("--task", [f"expected task or suite names, comma separated, got {value!r}"])
    return TaskPlan(list(tasks.values()), suites)


def task_score(entry: SuiteTask, results: dict[str, Any], where: str) -> float | None:
    """The entry's score in `results`: the mean of its metric keys (None when the suite gives it no metric)."""
    if not entry.metric:
        return None
    metrics = results["metrics"]
    missing = [name for name in entry.metric if name not in metrics]
    if missing:
        raise SuiteResultsError(f"{where}: no metric {', '.join(missing)} (the suite scores {entry.title} by "
                                f"{entry.main_metric}); the results have {', '.join(sorted(metrics))}")
    return sum(metrics[name] for name in entry.metric) / len(entry.metric)


@dataclass(frozen=True)
class AverageScore:
    name: str
    value: float | None  # None unless every member task has a score
    present: int
    members: int


def suite_scores(suite: Suite, results: dict[str, dict[str, Any]]
                 ) -> tuple[dict[str, float | None], list[AverageScore]]:
    """One model's scores: member name -> score (None: no result, refused, or no main metric), and the suite's
    averages. `results`: task name (as the results record it) -> results JSON."""
    scores: dict[str, float | None] = {}
    for entry in suite.tasks:
        name = load_task(suite.task_ref(entry)).name if entry.runnable else None
        found = results.get(name) if name is not None else None
        where = f"{suite.path}: task {name}"
        scores[entry.member_name] = task_score(entry, found, where) if found is not None else None
    averages = []
    for average, members in suite.averages.items():
        values = [scores[m] for m in members]
        present = [v for v in values if v is not None]
        mean = sum(present) / len(present) if present and len(present) == len(values) else None
        averages.append(AverageScore(average, mean, len(present), len(values)))
    return scores, averages
