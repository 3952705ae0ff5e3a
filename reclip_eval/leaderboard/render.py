"""Render leaderboards as markdown: a pure function of the paper tables and the results files (same inputs, same
bytes: rows sorted, fixed precision, no dates)."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from reclip_eval.leaderboard.measured import MeasuredRow
from reclip_eval.leaderboard.paper import PaperTable

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
    lines = []
    for m in rows:
        sha = (m.weights_sha256 or "?")[:12]
        hub = f", Hub commit {m.hub_commit[:12]}" if m.hub_commit else ""
        tasks = ", ".join(sorted(m.results))
        lines.append(f"- **{m.model} @ {m.image_size} px**: weights sha256 {sha}{hub}; tasks {tasks}; reclip-eval "
                     f"{m.software}; " + "; ".join(f"`{c}`" for c in m.commands()))
    return lines


def render_paper_table(table: PaperTable, measured: list[MeasuredRow], computed: list[list[str]] | None = None) -> str:
    """The paper's rows, then measured rows filling the same columns (from real datasets, or synthetic twins
    marked †), then rows computed by this project (e.g. Table 2's FLOPs)."""
    keys = [c.key for c in table.columns]
    rows = [["paper", r.row, *(_fmt(r.values.get(k)) for k in keys)] for r in table.rows]
    used = []
    for m in measured:
        cells, filled = [], False
        for key in keys:
            value, task = m.value(key)
            filled = filled or value is not None
            twin = task is not None and not key.startswith(task + "/")
            cells.append("" if value is None else f"{value:.2f}{TWIN_MARK if twin else ''}")
        if filled:
            rows.append(["measured", f"{m.model} @ {m.image_size} px", *cells])
            used.append(m)
    rows += computed or []
    out = [f"# {table.table}: {table.title}", ""]
    if table.note:
        out += [table.note, ""]
    out += [_table(["source", "row", *(c.title for c in table.columns)], rows), ""]
    if computed:
        out += ["Computed rows: `reclip-eval flops` on this project's model definitions (GMACs per image-text pair, "
                "forward, matrix products only).", ""]
    if used:
        out += [f"{TWIN_MARK}: measured on the synthetic twin of that dataset (see the task table in the README), "
                "not on the real one; compare trends, not values.", "", "Measured rows:", *_provenance(used), ""]
    else:
        out += ["No measured row yet: no results file fills these columns.", ""]
    return "\n".join(out)


def render_models(measured: list[MeasuredRow]) -> str:
    """One row per evaluated model (CLIP_benchmark style) with its main metric per task and its compute."""
    tasks = sorted({t for m in measured for t in m.results})
    headers = ["model", "image px", "GMACs / image", "train device-hours", *tasks]
    rows = []
    for m in measured:
        any_result = next(iter(m.results.values()))
        compute = any_result["model"].get("compute") or {}
        cells = []
        for task in tasks:
            result = m.results.get(task)
            if result is None:
                cells.append("")
            elif result["task"]["kind"] == "retrieval":
                metrics = result["metrics"]
                cells.append(f"{100 * metrics['i2t_R@1']:.2f} / {100 * metrics['t2i_R@1']:.2f}")
            else:
                cells.append(f"{100 * result['metrics']['top1']:.2f}")
        rows.append([m.model, str(m.image_size), _fmt(compute.get("image_gmacs")),
                     _fmt(compute.get("train_device_hours")), *cells])
    return "\n".join([
        "# Models", "",
        "Zero-shot top-1 (%) for classification tasks and linear probes, image->text / text->image R@1 (%) for "
        "retrieval; GMACs per image of the image tower at the evaluated size; device-hours of the checkpoint's "
        "training when it records them.", "",
        _table(headers, rows), "", "Provenance:", *_provenance(measured), ""])
