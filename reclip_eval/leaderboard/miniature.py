"""The miniature reproduction as data (`leaderboards/miniature.yaml`): which measured checkpoints fill which row of
which paper table, and the commands that trained them.

Results on a real dataset (task `imagenet`, ...) join a paper table by themselves. Results on the synthetic twins
do not: a model trained on shapes only answers the paper's question inside an experiment that pairs it with the
right baseline (same steps, same data). This file states those pairings once; the generator reads it like the
paper's numbers, so the tables stay a pure function of committed files.

A cell of a row comes from, in order: `values` (a literal such as the step count), then the `sources` entry whose
name prefixes the column key (Table 5's `before_finetune/...`, Table 10's `mask/...`), then `source`. A source
lists one checkpoint per seed; the cell is the mean over seeds, with the spread when there are several.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reclip_eval.config import from_dict, load_yaml
from reclip_eval.leaderboard.measured import MeasuredRow


@dataclass(frozen=True)
class Source:
    models: list[str]  # results JSON `model.id`, one per seed
    image_size: int  # the evaluated input size of those results


@dataclass(frozen=True)
class MiniatureRow:
    label: str
    trained_with: list[str]  # the commands that produced the checkpoints
    source: Source | None = None
    sources: dict[str, Source] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MiniatureTable:
    table: int
    note: str
    rows: list[MiniatureRow]


@dataclass(frozen=True)
class Miniature:
    note: str
    evaluated_with: str  # the evaluation command, with {model} and {image_size} placeholders
    tables: list[MiniatureTable]

    def table(self, number: int) -> MiniatureTable | None:
        return next((t for t in self.tables if t.table == number), None)


def load_miniature(path: Path) -> Miniature | None:
    if not path.is_file():
        return None
    return from_dict(Miniature, load_yaml(path), source=str(path))


@dataclass
class Cell:
    """A measured value over seeds (in %), and where it came from."""

    values: list[float]
    twin: bool  # from a synthetic twin of the column's dataset

    def text(self, twin_mark: str) -> str:
        mean = statistics.fmean(self.values)
        spread = f" ± {statistics.stdev(self.values):.2f}" if len(self.values) > 1 else ""
        return f"{mean:.2f}{spread}{twin_mark}"


def _source_for(row: MiniatureRow, key: str) -> tuple[Source | None, str]:
    """The source of column `key`, and the key as that source's results name it (prefix removed)."""
    head, _, rest = key.partition("/")
    if rest and head in row.sources:
        return row.sources[head], rest
    return row.source, key


def index_measured(measured: list[MeasuredRow]) -> dict[tuple[str, int], MeasuredRow]:
    """(model, image size) -> its measured row: how a miniature row's sources find their results."""
    return {(m.model, m.image_size): m for m in measured}


def miniature_cell(row: MiniatureRow, key: str, measured: dict[tuple[str, int], MeasuredRow]) -> Cell | None:
    source, inner = _source_for(row, key)
    if source is None:
        return None
    cell = Cell([], False)
    for model in source.models:
        m = measured.get((model, source.image_size))
        value, task = m.value(inner) if m else (None, None)
        if value is None:
            return None  # a seed is missing: no partial means
        cell.values.append(value)
        cell.twin = cell.twin or task != inner.split("/")[0]
    return cell


def row_models(row: MiniatureRow) -> list[tuple[str, int]]:
    sources = ([row.source] if row.source else []) + list(row.sources.values())
    return sorted({(m, s.image_size) for s in sources for m in s.models})


def training_compute(row: MiniatureRow, measured: dict[tuple[str, int], MeasuredRow]
                     ) -> tuple[float | None, float | None]:
    """Mean (forward TMACs over training, device-hours) of the checkpoints behind the row's main source (one per
    seed), from their results; (None, None) without a source."""
    if row.source is None:
        return None, None
    rows = [measured[key] for key in ((m, row.source.image_size) for m in row.source.models) if key in measured]
    tmacs, hours = [], []
    for m in rows:
        compute = next(iter(m.results.values()))["model"].get("compute") or {}
        if compute.get("train_gmacs") is not None:
            tmacs.append(compute["train_gmacs"] / 1e3)
        if compute.get("train_device_hours") is not None:
            hours.append(compute["train_device_hours"])
    return _mean_if_all(tmacs, len(rows)), _mean_if_all(hours, len(rows))


def _mean_if_all(values: list[float], expected: int) -> float | None:
    """The mean when every checkpoint reported the value (no mean over a subset of seeds), else None."""
    return statistics.fmean(values) if values and len(values) == expected else None
