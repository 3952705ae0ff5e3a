"""The task kinds a task YAML's `kind` can name, as one registry. Each kind says how it runs, which data it reads
(a layout role: reclip_eval/data/layouts), what its spec must give beyond the common keys, its headline cell in the
models leaderboard and its Hub task type for model cards.

A kind registers itself from the bottom of its runner module, beside the function that runs it:

    register_task_kind(TaskKind(name="retrieval", run=run_retrieval, reads="retrieval", headline=Headline(...)))

`reclip_eval/eval/__init__.py` imports the runner modules, so whoever imports anything of `reclip_eval.eval` (task
specs, the runner, this registry) sees every built-in kind; a test or plugin may register more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reclip_eval.data.layouts import LAYOUTS, layout_names
from reclip_eval.eval.outcome import TaskOutcome
from reclip_eval.registry import Registry

# (adapter, spec, data_root, layout, **the evaluation options runner.evaluate passes) -> TaskOutcome
Runner = Callable[..., TaskOutcome]
Validate = Callable[[Any], list[str]]  # TaskSpec -> its problems, each as `key: what is wrong`


@dataclass(frozen=True)
class Headline:
    """A kind's cell in the models leaderboard: its `metrics` in %, joined by " / ", and how the table's caption
    describes them (`measure` for `applies_to`; kinds with the same metrics share the measure of the first)."""

    metrics: tuple[str, ...]
    measure: str  # e.g. "image->text / text->image R@1 (%)"
    applies_to: str  # e.g. "retrieval"
    position: int  # where the kind goes in the caption, ascending

    def cell(self, metrics: dict[str, float]) -> str:
        return " / ".join(f"{100 * metrics[name]:.2f}" for name in self.metrics)


def no_problems(spec: Any) -> list[str]:
    return []


def requires(*keys: str) -> Validate:
    """A kind's validation that `keys` of the spec are all given."""

    def validate(spec: Any) -> list[str]:
        if all(getattr(spec, key) for key in keys):
            return []
        return [f"{' and '.join(keys)}: required for {spec.kind}"]

    return validate


@dataclass(frozen=True)
class TaskKind:
    name: str
    run: Runner
    reads: str  # the layout role its `data.layouts` must have (classification, retrieval, detection)
    headline: Headline
    summary: str  # one line for `reclip-eval tasks`
    validate: Validate = no_problems  # beyond the checks every task gets (tasks.py)
    hf_task_type: str | None = None  # the Hub's task type in model cards; None: the kind's own name


TASK_KINDS: Registry[TaskKind] = Registry("task kind")


def register_task_kind(kind: TaskKind) -> TaskKind:
    roles = sorted({layout.role for layout in LAYOUTS.values()})
    if kind.reads not in roles:
        raise ValueError(f"task kind {kind.name!r} reads {kind.reads!r} data, which no layout holds "
                         f"(layout roles: {', '.join(roles)})")
    return TASK_KINDS.register(kind.name)(kind)


def task_kind(name: str) -> TaskKind:
    """The registered kind `name` (an unknown name: the near-match error)."""
    return TASK_KINDS.get(name)


def hf_task_type(name: str) -> str:
    """The Hub task type of results of kind `name` (a kind without one, or no longer registered: its name)."""
    kind = TASK_KINDS.get(name) if name in TASK_KINDS.names() else None
    return (kind.hf_task_type if kind else None) or name


def readable_layouts(kind: TaskKind) -> list[str]:
    """The layouts a task of `kind` may list."""
    return layout_names(kind.reads)
