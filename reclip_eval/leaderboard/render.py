"""Render leaderboards as markdown: a pure function of the paper tables and the results files (same inputs, same
bytes: rows sorted, fixed precision, no dates)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tabulate import tabulate

from reclip_eval.eval.results_markdown import markdown_code, markdown_text
from reclip_eval.eval.results_schema import is_undefined
from reclip_eval.eval.task_kinds import TASK_KINDS, Headline, task_kind
from reclip_eval.leaderboard.claims import EXPECTATIONS, verdict
from reclip_eval.leaderboard.measured import MeasuredRow
from reclip_eval.leaderboard.miniature import (
    Comparison,
    MiniatureTable,
    claim_cells,
    index_measured,
    miniature_cell,
    reported_tables,
    row_models,
    training_compute,
)
from reclip_eval.paper_tables import PaperTable, PaperTables

TWIN_MARK = "†"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else str(round(value, 2))
    return str(value)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _provenance(rows: list[MeasuredRow]) -> list[str]:
    """Where each row's numbers come from. Everything in it is read from results files, so it is put in as text
    (results_markdown.py): a model id or command cannot add markup of its own."""
    lines = []
    for m in rows:
        sha = markdown_text((m.weights_sha256 or "?")[:12])
        hub = f", Hub commit {markdown_text(m.hub_commit[:12])}" if m.hub_commit else ""
        tasks = ", ".join(markdown_text(t) for t in sorted(m.results))
        lines.append(f"- **{markdown_text(m.model)} @ {m.size_label} px**: weights sha256 {sha}{hub}; tasks {tasks}; "
                     f"reclip-eval {markdown_text(m.software)}; " + "; ".join(markdown_code(c) for c in m.commands()))
    return lines


def _real_rows(keys: list[str], measured: list[MeasuredRow]) -> tuple[list[list[str]], list[MeasuredRow]]:
    """Measured rows that fill some of `keys` from real datasets. Synthetic-twin results join a paper table only
    through leaderboards/miniature.yaml, which pairs them with their baseline."""
    rows, used = [], []
    for m in measured:
        cells = []
        for key in keys:
            value, task = m.value(key)
            real = task is not None and key.split("/")[-2] == task
            cells.append(("n/a" if value is None else f"{value:.2f}") if real else "")
        if any(cells):
            rows.append(["measured", f"{markdown_text(m.model)} @ {m.size_label} px", *cells])
            used.append(m)
    return rows, used


def _miniature_rows(keys: list[str], experiment: MiniatureTable | Comparison, measured: list[MeasuredRow]
                    ) -> tuple[list[list[str]], list[str]]:
    index = index_measured(measured)
    rows, provenance = [], []
    for row in experiment.rows:
        cells = []
        for key in keys:
            if key in row.values:
                cells.append(_fmt(row.values[key]))
                continue
            cell = miniature_cell(row, key, index)
            cells.append("" if cell is None else cell.text(TWIN_MARK if cell.twin else ""))
        found = [index[k] for k in row_models(row) if k in index]
        tmacs, hours = training_compute(row, index)
        rows.append(["miniature", row.label, *cells, _fmt(tmacs), _fmt(hours)])
        missing = [f"{m} @ {s} px" for m, s in row_models(row) if (m, s) not in index]
        lines = [f"- **{row.label}**: trained with " + "; ".join(f"`{c}`" for c in row.trained_with) + "."]
        lines += ["  " + line[2:] for line in _provenance(found)]
        if missing:
            lines.append(f"  Not measured yet: {', '.join(missing)}.")
        provenance += lines
    return rows, provenance


def _verdicts(experiment: MiniatureTable | Comparison, measured: list[MeasuredRow], whose: str = "the paper's"
              ) -> list[str]:
    """The table's claims in YAML order: each with where the paper makes it, what it compares and its verdict."""
    if not experiment.claims:
        return []
    index = index_measured(measured)
    lines = [f"Verdicts of {whose} claims on these rows: d = a - b in points and its 95% CI over seeds (Student's "
             "t: Welch's interval, or the paired interval on the per-seed differences for two sources of one row "
             "with the same seeds). A claim reproduces when the whole interval meets the expectation, does not "
             "when the whole interval misses it, and is inconclusive otherwise.", ""]
    for claim in experiment.claims:
        lines.append(f"- **{claim.claim}** (paper: {claim.paper}; {claim.metric}, a = {claim.a.describe()}, "
                     f"b = {claim.b.describe()}; expected {EXPECTATIONS[claim.expect].reads(claim.margin)})")
        a, b, paired = claim_cells(experiment, claim, index)
        if a is None or b is None:
            missing = [side.describe() for side, cell in ((claim.a, a), (claim.b, b)) if cell is None]
            lines.append(f"  no verdict: no results yet for {' and '.join(missing)} (every seed is needed)")
        else:
            lines.append("  " + verdict(claim, a.values, b.values, paired=paired))
    return lines + [""]


def render_paper_table(table: PaperTable, measured: list[MeasuredRow], experiment: MiniatureTable | None = None,
                       computed: list[list[str]] | None = None) -> str:
    """The paper's rows, then the miniature reproduction's rows (synthetic twins, marked †), then measured rows on
    the real datasets, then rows computed by this project (e.g. Table 2's FLOPs)."""
    columns = table.columns + (experiment.extra_columns if experiment else [])
    keys = [c.key for c in columns]
    headers = ["source", "row", *(c.title for c in columns)]
    extra = ["train TMACs (fwd)", "device-hours"] if experiment else []
    rows = [["paper", r.row, *(_fmt(r.values.get(k)) for k in keys), *([""] * len(extra))] for r in table.rows]
    mini_provenance: list[str] = []
    if experiment:
        mini_rows, mini_provenance = _miniature_rows(keys, experiment, measured)
        rows += mini_rows
    # Only the paper's own columns take real-dataset rows: the extra columns are synthetic tasks.
    real_rows, used = _real_rows([c.key for c in table.columns], measured)
    rows += [r + [""] * (len(keys) - len(table.columns) + len(extra)) for r in real_rows]
    rows += [r + [""] * (len(headers) + len(extra) - len(r)) for r in computed or []]
    out = [f"# {table.table}: {table.title}", ""]
    if table.note:
        out += [table.note, ""]
    out += [_table(headers + extra, rows), ""]
    if computed:
        out += ["Computed rows: `reclip-eval flops` on this project's model definitions (GMACs per image-text pair, "
                "forward, matrix products only).", ""]
    if experiment:
        out += [f"Miniature rows: {experiment.note}", "", *_verdicts(experiment, measured), MINIATURE_LEGEND, "",
                *mini_provenance, ""]
    if used:
        out += ["Measured rows (real datasets):", *_provenance(used), ""]
    if not experiment and not used:
        out += ["No measured row yet: no results file on these datasets, and no miniature experiment for this "
                "table.", ""]
    return "\n".join(out)


MINIATURE_LEGEND = (
    f"{TWIN_MARK}: measured on the synthetic twin of that dataset (see the task table in docs/tasks.md), not on the real "
    "one; compare trends, not values. A cell with several seeds reads mean [lo, hi]: the mean over the n seeds and "
    "its 95% confidence interval (Student's t with n - 1 degrees of freedom, n = seeds); one seed gives the mean "
    "alone. train TMACs (fwd): forward multiply-accumulates of both towers over all training samples (Table 2's "
    "convention, summed over stages); device-hours on the device the checkpoint records.")


def render_comparison(comparison: Comparison, measured: list[MeasuredRow], point_lines: list[str]) -> str:
    """A comparison of miniature rows (leaderboards/miniature.yaml `comparisons:`): its table with CIs, the claims'
    verdicts, the plot ({name}.png) and its points (`point_lines`, rows of the points table), then the reported
    tables it is read beside, each under its paper's source."""
    keys = [c.key for c in comparison.columns]
    headers = ["source", "row", *(c.title for c in comparison.columns), "train TMACs (fwd)", "device-hours"]
    rows, provenance = _miniature_rows(keys, comparison, measured)
    out = [f"# {comparison.title}", "", comparison.note, "", _table(headers, rows), "",
           *_verdicts(comparison, measured, whose="the"), MINIATURE_LEGEND, "",
           f"![{comparison.title}]({comparison.name}.png)", "",
           "The plot's points: forward TMACs over training; shapes-zeroshot top-1; retrieval = mean of i2t and t2i "
           "R@1 on shapes-retrieval (the mean over seeds and its 95% CI in brackets, the plot's error bars).", "",
           "| panel | point | compute | zero-shot top-1 (%) | retrieval mean R@1 (%) |", "|---|---|---|---|---|",
           *point_lines, ""]
    if comparison.paper_tables:
        out += ["## Reported by the papers (not measured here)", "",
                "Each in its own setup (model, data, schedule): read beside the miniature for the direction of an "
                "effect, not its size.", ""]
        for paper, table in reported_tables(comparison):
            out += _reported_table(paper, table)
    return "\n".join(out + ["## Provenance", "", *provenance, ""])


def _reported_table(paper: PaperTables, table: PaperTable) -> list[str]:
    headers = ["row", *(c.title for c in table.columns)]
    rows = [[r.row, *(_fmt(r.values.get(c.key)) for c in table.columns)] for r in table.rows]
    source = paper.source.rstrip(".") + (f" ({paper.url})" if paper.url else "")
    return [f"### {table.table}: {table.title}", "", *([table.note, ""] if table.note else []),
            _table(headers, rows), "", f"Source: {source}.", ""]


def _headline_caption() -> str:
    """What the models table's task cells hold, per task kind: kinds with the same headline metrics share one
    phrase (the measure of the first), in the kinds' caption positions."""
    groups: dict[tuple[str, ...], list[Headline]] = {}
    for headline in sorted((kind.headline for kind in TASK_KINDS.values()), key=lambda h: h.position):
        groups.setdefault(headline.metrics, []).append(headline)
    # Two kinds of one family (zero-shot classification with and without groups) name the same tasks once.
    return ", ".join(f"{group[0].measure} for {' and '.join(dict.fromkeys(h.applies_to for h in group))}"
                     for group in groups.values())


def _headline_cell(result: dict) -> str:
    """The kind's headline metrics in % (Headline.cell), an undefined one (LVIS's -1) as n/a rather than -100."""
    metrics = result["metrics"]
    headline = task_kind(result["task"]["kind"]).headline
    return " / ".join("n/a" if is_undefined(metrics[name]) else replace(headline, metrics=(name,)).cell(metrics)
                      for name in headline.metrics)


def render_models(measured: list[MeasuredRow]) -> str:
    """One row per evaluated model (CLIP_benchmark style) with its headline metrics per task and its compute."""
    tasks = sorted({t for m in measured for t in m.results})
    headers = ["model", "image px", "GMACs / image", "train device-hours", *(markdown_text(t) for t in tasks)]
    rows = []
    for m in measured:
        any_result = next(iter(m.results.values()))
        compute = any_result["model"].get("compute") or {}
        cells = []
        for task in tasks:
            result = m.results.get(task)
            cells.append("" if result is None else _headline_cell(result))
        rows.append([markdown_text(m.model), m.size_label, _fmt(compute.get("image_gmacs")),
                     _fmt(compute.get("train_device_hours")), *cells])
    return "\n".join([
        "# Models", "",
        f"{_headline_caption()}; GMACs per image of the image tower at the evaluated size; device-hours of the "
        "checkpoint's training when it records them.", "",
        _table(headers, rows), "", "Provenance:", *_provenance(measured), ""])
