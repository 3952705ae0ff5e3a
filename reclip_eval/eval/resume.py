"""Resuming a suite: what evaluating a task will record as its measurement, as far as it is known before any image
is read, and whether the results store already holds that measurement (then the task is not evaluated again).

Known before the run: the model side (weights sha256, preprocessing, tokenizer, image size, precision: the same
fields results_store checks before a run), the task (name, kind, the sha256 of its YAML), where its data is and in
which layout and split, and for tasks with class names and templates the prompts record. Not known before the run:
the data's file fingerprint (the files an evaluation reads are listed only by reading the set). So a set replaced in
place under the same folder is not noticed by a resumed suite; `--recompute` evaluates everything again, and the
results store then refuses to keep a file whose metrics no longer reproduce.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclip_eval.classifier.templates import prompts_record
from reclip_eval.distributed import gather_ints, rank_and_size
from reclip_eval.eval.results_store import measured_before
from reclip_eval.eval.runner import EvalOptions, check_data_root
from reclip_eval.eval.set_lists import task_classes, task_templates
from reclip_eval.eval.tasks import TaskSpec, locate_task_data
from reclip_eval.zoo.adapter import ModelAdapter


def planned_record(adapter: ModelAdapter, spec: TaskSpec, options: EvalOptions) -> dict[str, Any]:
    """The parts of the results JSON that evaluating `spec` would write and that are known before it runs. Locating
    the data may generate a synthetic set (as the run would)."""
    check_data_root(spec, options.data_dir)
    data_root, layout = locate_task_data(spec, options.data_dir, workers=max(1, options.workers))
    planned: dict[str, Any] = {
        "model": adapter.describe(),
        "precision": options.precision,
        "task": {"name": spec.name, "kind": spec.kind, "spec_sha256": spec.spec_sha256(), "data_dir": str(data_root),
                 "split": layout.split, "layout": layout.kind},
    }
    if options.decode != "full":  # as the runner records it: only an approximate decode
        planned["decode"] = options.decode
    if spec.classes and spec.templates:  # the zero-shot kinds' prompts record (eval/zeroshot.py zeroshot_record)
        classes = task_classes(spec, data_root, layout)  # the task's lists, or the set's own (from_data)
        planned["prompts"] = prompts_record(task_templates(spec, data_root, layout), list(classes.names))
    return planned


def stored_measurement(adapter: ModelAdapter, spec: TaskSpec, options: EvalOptions, path: Path
                       ) -> dict[str, Any] | None:
    """The results at `path` when they record what evaluating `spec` now would measure, else None. Under torchrun
    the main process decides (it alone reads and writes the results folder) and every process follows: the other
    processes get `{}` for a task the main process found measured."""
    rank, world = rank_and_size()
    found = measured_before(path, planned_record(adapter, spec, options)) if rank == 0 and path.is_file() else None
    if world > 1:
        skip = gather_ints([int(found is not None)], options.device)[0][0]
        return found if rank == 0 else ({} if skip else None)
    return found
