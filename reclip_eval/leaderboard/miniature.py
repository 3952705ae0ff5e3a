"""The miniature reproduction as data (`leaderboards/miniature.yaml`): which measured checkpoints fill which row of
which paper table, and the commands that trained them.

Results on a real dataset (task `imagenet`, ...) join a paper table by themselves. Results on the synthetic twins
do not: a model trained on shapes only answers the paper's question inside an experiment that pairs it with the
right baseline (same steps, same data). This file states those pairings once; the generator reads it like the
paper's numbers, so the tables stay a pure function of committed files.

A cell of a row comes from, in order: `values` (a literal such as the step count), then the `sources` entry whose
name prefixes the column key (Table 5's `before_finetune/...`, Table 10's `mask/...`), then `source`. A source
lists one checkpoint per seed, in seed order (the i-th checkpoint of every source of a row is the same seed); the
cell is the mean over seeds, with its 95% confidence interval when there are several.

Besides the paper's tables, the file holds comparisons (`comparisons:`) that no table of the RECLIP paper has:
RECLIP beside its siblings (CLIPA, FLIP, SLIP, CLIP + data augmentation) at equal compute, with their own columns,
claims and plot, and the siblings' reported tables (leaderboards/paper/NAME_tables.yaml) named beside them.

A table may also state the paper's claims about its rows (`claims:`, reclip_eval/leaderboard/claims.py): each
compares two rows (or two sources of one row) on one column. They are checked against the table's rows, sources and
paper columns when the file is loaded, so a typo fails before any leaderboard is written.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reclip_eval.config import from_dict, load_yaml
from reclip_eval.errors import ReclipError
from reclip_eval.leaderboard.claims import EXPECTATIONS, Claim, Side, mean_interval
from reclip_eval.leaderboard.measured import MeasuredRow
from reclip_eval.names import near_matches
from reclip_eval.paper_tables import Column, PaperTable, PaperTables, load_paper_tables, paper_file
from reclip_eval.paths import data_folder


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


class _RowsByLabel:
    """`row(label)` for a table or comparison: its `rows` looked up by label (labels are unique in a table)."""

    rows: list[MiniatureRow]

    def row(self, label: str) -> MiniatureRow | None:
        return next((r for r in self.rows if r.label == label), None)


@dataclass(frozen=True)
class MiniatureTable(_RowsByLabel):
    table: int
    note: str
    rows: list[MiniatureRow]
    claims: list[Claim] = field(default_factory=list)
    # Columns the paper's table lacks, shown after its own for the miniature rows only: tasks with no real
    # counterpart, such as the fine-texture task that only a model seeing full-size images can solve.
    extra_columns: list[Column] = field(default_factory=list)


@dataclass(frozen=True)
class PaperTableRef:
    """A reported table shown beside a comparison: `table` of leaderboards/paper/{paper}_tables.yaml."""

    paper: str
    table: str


@dataclass(frozen=True)
class Comparison(_RowsByLabel):
    """A miniature experiment that is not a table of the RECLIP paper: its own columns (literal `values` or
    measured keys, as a table's), rows, claims, and the reported tables it is read beside. Rendered to
    leaderboards/{name}.md with a plot of its rows' accuracy against training compute ({name}.png)."""

    name: str  # the leaderboard files' stem
    title: str
    note: str
    columns: list[Column]
    rows: list[MiniatureRow]
    claims: list[Claim] = field(default_factory=list)
    paper_tables: list[PaperTableRef] = field(default_factory=list)


@dataclass(frozen=True)
class Miniature:
    note: str
    evaluated_with: str  # the evaluation command, with {model} and {image_size} placeholders
    tables: list[MiniatureTable]
    comparisons: list[Comparison] = field(default_factory=list)

    def table(self, number: int) -> MiniatureTable | None:
        return next((t for t in self.tables if t.table == number), None)


class MiniatureError(ReclipError):
    """miniature.yaml states something its tables cannot hold (a claim about a row, source or column they lack)."""


def load_miniature(path: Path, paper: PaperTables | None = None) -> Miniature | None:
    """The miniature file, its claims checked against its rows and `paper`'s columns (default: the paper's
    tables); None when there is no file."""
    if not path.is_file():
        return None
    miniature = from_dict(Miniature, load_yaml(path), source=str(path))
    columns = {t.number: [c.key for c in t.columns] for t in (paper or load_paper_tables()).tables}
    for table in miniature.tables:
        known = columns.get(table.table)
        _check_claims(path, f"table {table.table}", f"Table {table.table}", table,
                      None if known is None else known + [c.key for c in table.extra_columns])
    for comparison in miniature.comparisons:
        where = f"comparison {comparison.name!r}"
        _check_claims(path, where, where, comparison, [c.key for c in comparison.columns])
        for i, ref in enumerate(comparison.paper_tables):
            problem = _paper_table_problem(ref)
            if problem:
                raise MiniatureError(f"{path}: {where}, paper_tables[{i}]: {problem}")
    return miniature


def _check_claims(path: Path, where: str, label: str, table: MiniatureTable | Comparison,
                  columns: list[str] | None) -> None:
    """Each claim of `table` (called `label` in messages) against its rows and `columns` (None: no such table)."""
    for i, claim in enumerate(table.claims):
        problem = _claim_problem(table, claim, columns, label)
        if problem:
            raise MiniatureError(f'{path}: {where}, claims[{i}] ("{claim.claim}"): {problem}')


def _paper_table_problem(ref: PaperTableRef) -> str | None:
    if not (data_folder("leaderboards") / paper_file(ref.paper)).is_file():
        return f"paper: no file {paper_file(ref.paper)} under leaderboards/"
    tables = [t.table for t in load_paper_tables(paper=ref.paper).tables]
    if ref.table not in tables:
        return f"table: {ref.table!r} is not a table of {paper_file(ref.paper)}; " + _hint(ref.table, tables, "tables")
    return None


def reported_tables(comparison: Comparison) -> list[tuple[PaperTables, PaperTable]]:
    """The reported tables a comparison is read beside, each with its paper (source and url), in file order."""
    found = []
    for ref in comparison.paper_tables:
        paper = load_paper_tables(paper=ref.paper)
        found.append((paper, next(t for t in paper.tables if t.table == ref.table)))
    return found


def _hint(name: str, known: list[str], what: str) -> str:
    near = near_matches(name, known, n=1)
    return f"did you mean {near[0]!r}?" if near else f"{what}: {', '.join(map(repr, known)) or 'none'}"


def _claim_problem(table: MiniatureTable | Comparison, claim: Claim, columns: list[str] | None, label: str
                   ) -> str | None:
    """'key: what is wrong' for the first problem of `claim`, or None."""
    if columns is None:
        return f"table: the paper has no {label} to hold the claim"
    if claim.expect not in EXPECTATIONS:
        return f"expect: {claim.expect!r} is not one of {', '.join(EXPECTATIONS)}"
    if claim.margin < 0:
        return f"margin: must be >= 0 points, got {claim.margin}"
    sources = []
    for name, side in (("a", claim.a), ("b", claim.b)):
        row = table.row(side.row)
        if row is None:
            return f"{name}.row: {side.row!r} is not a row of this table; " + _hint(
                side.row, [r.label for r in table.rows], "rows")
        if side.source is not None and side.source not in row.sources:
            return f"{name}.source: {side.source!r} is not a source of row {row.label!r}; " + _hint(
                side.source, list(row.sources), "its sources")
        column = side.column(claim.metric)
        if column not in columns:
            via = f" (under source {side.source!r}: {column!r})" if side.source else ""
            return (f"metric: {claim.metric!r}{via} is not a column of {label}; "
                    + _hint(column, columns, "columns"))
        if column in row.values:
            return f"metric: {column!r} is a literal value of row {row.label!r}, not a measurement over seeds"
        source, _ = _source_for(row, column)
        if source is None:
            return f"{name}.source: row {row.label!r} has no main source; name one of: {', '.join(row.sources)}"
        sources.append(source)
    if sources[0] is sources[1]:
        return "b: names the same cells as a; a claim compares two"
    return None


@dataclass
class Cell:
    """A measured value over seeds (in %), and where it came from."""

    values: list[float]
    twin: bool  # from a synthetic twin of the column's dataset

    def text(self, twin_mark: str) -> str:
        """`mean [lo, hi]` with the 95% CI over seeds, or the mean alone for one seed; then the twin mark."""
        return mean_interval(self.values).text() + twin_mark


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


def claim_cells(table: MiniatureTable | Comparison, claim: Claim, measured: dict[tuple[str, int], MeasuredRow]
                ) -> tuple[Cell | None, Cell | None, bool]:
    """The cells of a claim's two sides (None: not all seeds measured), and whether their seeds pair up: two
    sources of one row with as many checkpoints (seed i of one is seed i of the other)."""
    a, b = (_side_source(table, side, claim.metric) for side in (claim.a, claim.b))
    paired = claim.a.row == claim.b.row and a is not b and len(a.models) == len(b.models)
    cells = (miniature_cell(table.row(side.row), side.column(claim.metric), measured) for side in (claim.a, claim.b))
    return *cells, paired


def _side_source(table: MiniatureTable | Comparison, side: Side, metric: str) -> Source:
    source, _ = _source_for(table.row(side.row), side.column(metric))
    assert source is not None, "load_miniature checks that every side of a claim has a source"
    return source


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
