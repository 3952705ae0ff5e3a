"""Measured results (results JSON files) as leaderboard cells: which paper column each result can fill.

A column is filled from a result on the real dataset (`imagenet/top1` from task `imagenet`) or, marked as such,
from the synthetic twin of that dataset (`imagenet/top1` from `shapes-zeroshot`, whose task YAML says
`twin_of: imagenet`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reclip_eval.errors import ReclipError
from reclip_eval.eval.results_markdown import one_line
from reclip_eval.eval.results_schema import is_undefined, read_results
from reclip_eval.eval.tasks import synthetic_twins


@dataclass
class MeasuredRow:
    """One evaluated model (at one image size): its metrics per task, and how they were obtained."""

    model: str
    image_size: int | tuple[int, int]  # (height, width) for a non-square input
    weights_sha256: str | None
    hub_commit: str | None
    software: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> results JSON
    files: list[str] = field(default_factory=list)
    twins: dict[str, str] = field(default_factory=dict)  # dataset of a paper column -> its synthetic twin task

    def value(self, column_key: str) -> tuple[float | None, str | None]:
        """(value in %, task it came from) for a column key like 'imagenet/top1'; twins allowed. An undefined metric
        (LVIS's -1) is (None, its task): measured, but no number."""
        if "/" not in column_key:
            return None, None
        dataset, metric = column_key.split("/", 1)
        for task in (dataset, self.twins.get(dataset)):
            if task and task in self.results and metric in self.results[task]["metrics"]:
                value = self.results[task]["metrics"][metric]
                return (None if is_undefined(value) else 100 * value), task
        return None, None

    @property
    def size_label(self) -> str:
        """The input size as the tables show it before "px": `64`, or `64x96` (height x width)."""
        return "x".join(map(str, self.image_size)) if isinstance(self.image_size, tuple) else str(self.image_size)

    def commands(self) -> list[str]:
        return sorted({r["run"]["command"] for r in self.results.values()})


class LeaderboardInputError(ReclipError):
    """The results folder cannot be turned into one leaderboard without choosing between files."""


def load_measured(results_dir: Path) -> list[MeasuredRow]:
    """Every results JSON under `results_dir`, grouped by (model id, image size); sorted for stable output. Each file
    is checked against the results schema first: one that fails stops the build, naming the file and key."""
    rows: dict[tuple[str, int | tuple[int, int]], MeasuredRow] = {}
    twins = synthetic_twins()
    cell_files: dict[tuple, str] = {}  # (model, size, task) -> the file that filled that cell
    for path in sorted(results_dir.glob("*.json")):
        data = read_results(path, LeaderboardInputError)
        model = data["model"]
        # A model evaluated on another backend than torch (`--backend jax`) is a row of its own: the same weights
        # computed by another framework, a check of the numbers rather than another model.
        backend = model.get("backend")
        size = tuple(model["image_size"]) if isinstance(model["image_size"], list) else model["image_size"]
        key = (model["id"] + (f" [{backend}]" if backend and backend != "torch" else ""), size)
        weights = model.get("weights") or {}
        software = data["run"]["software"]
        version = software.get("reclip-eval", "?") + (f" (git {software['reclip-eval_git'][:10]})"
                                                       if software.get("reclip-eval_git") else "")
        row = rows.setdefault(key, MeasuredRow(
            model=key[0], image_size=size, weights_sha256=weights.get("sha256"),
            hub_commit=weights.get("hub_commit"), software=version, twins=twins))
        task = data["task"]["name"]
        earlier = row.results.get(task)
        if earlier and (earlier["model"].get("weights") or {}).get("sha256") != weights.get("sha256"):
            # Two files claim one leaderboard cell with different weights: picking either would be silently wrong.
            raise LeaderboardInputError(
                f"{results_dir}: {cell_files[(*key, task)]} and {path.name} both hold {one_line(model['id'])} at "
                f"{row.size_label} px on {task} but measured different weights; move one out of the folder")
        cell_files[(*key, task)] = path.name
        row.results[task] = data
        row.files.append(path.name)
    # A square size sorts as (side, side), so square and non-square inputs of one model sort together.
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1] if isinstance(k[1], tuple) else (k[1], k[1])))]
