"""reclip-eval tasks: the evaluation tasks and the data each needs."""

from __future__ import annotations

import argparse


def add_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="reclip-eval tasks", description="List the evaluation tasks (tasks/).")


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from reclip_eval.eval.tasks import list_tasks

    rows = [[t.name, t.kind, ", ".join(x.kind for x in t.data.layouts), t.description] for t in list_tasks()]
    print(tabulate(rows, headers=["task", "kind", "layouts", "description"], tablefmt="github"))
    return 0
