"""reclip-eval tasks: the evaluation tasks and the data each needs, then the task kinds and data layouts a task
YAML can name (both registries: a new kind or layout is listed here by registering itself)."""

from __future__ import annotations

import argparse


def add_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="reclip-eval tasks",
                                   description="List the evaluation tasks (tasks/), the task kinds and the data "
                                               "layouts a task can name.")


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from reclip_eval.data.layouts import LAYOUTS
    from reclip_eval.eval.task_kinds import TASK_KINDS, readable_layouts
    from reclip_eval.eval.tasks import ALIASES_FILE, alias_table, list_tasks

    # A layout may be listed twice (two splits or folders): its name once.
    rows = [[t.name, t.kind, ", ".join(dict.fromkeys(x.kind for x in t.data.layouts)), t.description]
            for t in list_tasks()]
    print(tabulate(rows, headers=["task", "kind", "layouts", "description"], tablefmt="github"))
    aliases = [[a.alias, a.task, a.suite] for a in alias_table()]
    print(f"\nOther suites' names, accepted by --task (tasks/{ALIASES_FILE}):\n")
    print(tabulate(aliases, headers=["alias", "task", "suite"], tablefmt="github"))
    from reclip_eval.eval.suites import CLIP_BENCHMARK_COLLECTIONS, load_suite, suite_files

    collection = {suite: alias for alias, suite in CLIP_BENCHMARK_COLLECTIONS.items()}
    suites = [load_suite(name) for name, path in suite_files().items() if path.stem == name]
    rows = [[s.name, collection.get(s.name, ""), f"{sum(e.runnable for e in s.tasks)} of {len(s.tasks)}",
             ", ".join(s.averages), s.description] for s in suites]
    print("\nSuites, accepted by --task (tasks/suites/; `reclip-eval leaderboard --suite NAME` shows one):\n")
    print(tabulate(rows, headers=["suite", "CLIP_benchmark name", "tasks run", "averages", "description"],
                   tablefmt="github"))
    kinds = [[k.name, k.reads, ", ".join(readable_layouts(k)), k.summary] for k in TASK_KINDS.values()]
    print("\nTask kinds (a task's `kind`):\n")
    print(tabulate(kinds, headers=["kind", "reads", "layouts", "what it measures"], tablefmt="github"))
    layouts = [[layout.name, layout.role, layout.summary] for layout in LAYOUTS.values()]
    print("\nData layouts (a task's `data.layouts[].kind`, first one present wins):\n")
    print(tabulate(layouts, headers=["layout", "feeds", "on disk"], tablefmt="github"))
    return 0
