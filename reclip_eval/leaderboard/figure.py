"""Figure 2 of the paper (zero-shot accuracy vs training compute), from Table 1: the paper's points, and the
miniature reproduction's points in their own panels (their compute is in other units, on another device, and
their accuracy is on the synthetic twins, so sharing axes would suggest a comparison the data cannot make).

The points are also written as a markdown table (figure2.md), which the drift check compares byte for byte; the
PNG is rendered from exactly those points. A miniature point is a mean over seeds, shown with its 95% confidence
interval (error bars in the PNG, brackets in the markdown).
"""

from __future__ import annotations

import dataclasses
import io
import statistics
from dataclasses import dataclass

from reclip_eval.leaderboard.claims import Interval, mean_interval
from reclip_eval.leaderboard.measured import MeasuredRow
from reclip_eval.leaderboard.miniature import (
    Comparison,
    MiniatureRow,
    MiniatureTable,
    index_measured,
    miniature_cell,
    training_compute,
)
from reclip_eval.paper_tables import PaperTable

# The paper's retrieval axis: the mean of image->text and text->image R@1 on Flickr30K and MSCOCO.
PAPER_RETRIEVAL = ["flickr30k/i2t_R@1", "flickr30k/t2i_R@1", "mscoco/i2t_R@1", "mscoco/t2i_R@1"]
# The miniature has one retrieval twin (Flickr30K's); its two directions are averaged the same way.
MINIATURE_RETRIEVAL = ["flickr30k/i2t_R@1", "flickr30k/t2i_R@1"]


@dataclass(frozen=True)
class Point:
    series: str  # a model family; points of one series are joined by a line (e.g. 300k -> 600k steps)
    label: str
    compute: float
    classification: float | None
    retrieval: float | None
    # 95% CIs over seeds (miniature points with several seeds); the paper reports none
    classification_ci: Interval | None = None
    retrieval_ci: Interval | None = None


def _series(row_label: str) -> str:
    return row_label.split(" (")[0]


def paper_points(table1: PaperTable) -> list[Point]:
    """Table 1's rows that Figure 2 plots: the CLIP reproduction and the RECLIP models (not CLIP*, which was trained
    on other data at another resolution and is grayed out in the paper)."""
    points = []
    for row in table1.rows:
        if row.model is None:
            continue
        retrieval = [row.values.get(k) for k in PAPER_RETRIEVAL]
        points.append(Point(_series(row.row), row.row, float(row.values["compute/tpu_v3_core_hours"]),
                            row.values.get("imagenet/top1"),
                            statistics.fmean(retrieval) if None not in retrieval else None))
    return points


def _plotted(rows: list[MiniatureRow]) -> list[tuple[MiniatureRow, str]]:
    """(row, series) per point: a row with a main source is one point; a row whose named sources are the compared
    things (two trainers of one recipe) is one point per source, each its own series."""
    plotted = []
    for row in rows:
        if row.source is not None or not row.sources:
            plotted.append((row, _series(row.label)))
            continue
        for name, source in row.sources.items():
            label = f"{row.label} ({name})"
            plotted.append((dataclasses.replace(row, label=label, source=source, sources={}), label))
    return plotted


def miniature_points(experiment: MiniatureTable | Comparison | None, measured: list[MeasuredRow]) -> list[Point]:
    if experiment is None:
        return []
    index = index_measured(measured)
    points = []
    for row, series in _plotted(experiment.rows):
        tmacs, _ = training_compute(row, index)
        if tmacs is None:
            continue
        top1 = miniature_cell(row, "imagenet/top1", index)
        recalls = [miniature_cell(row, k, index) for k in MINIATURE_RETRIEVAL]
        # Both directions come from the same checkpoints: average them per seed, then take the interval over seeds.
        per_seed = ([statistics.fmean(directions) for directions in zip(*(c.values for c in recalls), strict=True)]
                    if all(c is not None for c in recalls) else None)
        top1_ci = mean_interval(top1.values) if top1 else None
        retrieval_ci = mean_interval(per_seed) if per_seed else None
        points.append(Point(series, row.label, tmacs, top1_ci.estimate if top1_ci else None,
                            retrieval_ci.estimate if retrieval_ci else None, top1_ci, retrieval_ci))
    return points


def _fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _fmt_ci(value: float | None, ci: Interval | None) -> str:
    return ci.text() if ci else _fmt(value)


def render_figure_markdown(paper: list[Point], miniature: list[Point]) -> str:
    lines = ["# Figure 2: zero-shot accuracy vs training compute", "",
             "![Figure 2](figure2.png)", "",
             "Top: the paper's Figure 2 points, from its Table 1 (TPU-v3 core-hours; ImageNet top-1; retrieval = mean "
             "of image->text and text->image R@1 on Flickr30K and MSCOCO). Bottom: the miniature reproduction "
             "(leaderboards/miniature.yaml, Table 1 rows): forward TMACs over training; shapes-zeroshot top-1; "
             "retrieval = mean of i2t and t2i R@1 on shapes-retrieval (the synthetic twins): the mean over seeds "
             "and, with several seeds, its 95% confidence interval in brackets (Student's t, n = seeds; the error "
             "bars of the figure).", "",
             "| panel | point | compute | zero-shot top-1 (%) | retrieval mean R@1 (%) |",
             "|---|---|---|---|---|"]
    lines += [f"| paper | {p.label} | {_fmt(p.compute, 0)} core-hours | {_fmt(p.classification)} | "
              f"{_fmt(p.retrieval)} |" for p in paper]
    lines += miniature_point_lines(miniature)
    if not miniature:
        lines += ["", "No miniature point yet: no Table 1 row of miniature.yaml has all its results."]
    return "\n".join(lines + [""])


def miniature_point_lines(points: list[Point]) -> list[str]:
    """Markdown table lines (panel, point, compute, top-1, retrieval) of miniature points, with their CIs."""
    return [f"| miniature | {p.label} | {_fmt(p.compute, 3)} TMACs | "
            f"{_fmt_ci(p.classification, p.classification_ci)} | {_fmt_ci(p.retrieval, p.retrieval_ci)} |"
            for p in points]


def _error_bars(points: list[Point], metric: str) -> list[list[float]] | None:
    """matplotlib's yerr (distances below and above each point) of the points' 95% CIs; None when none has one."""
    intervals = [getattr(p, f"{metric}_ci") for p in points]
    if all(ci is None or ci.lo is None for ci in intervals):
        return None
    below = [0.0 if ci is None or ci.lo is None else ci.estimate - ci.lo for ci in intervals]
    above = [0.0 if ci is None or ci.hi is None else ci.hi - ci.estimate for ci in intervals]
    return [below, above]


@dataclass(frozen=True)
class Panel:
    """One row of a figure: classification and retrieval against compute for `points`."""

    title: str
    xlabel: str
    points: list[Point]
    marker: str


def render_figure_png(paper: list[Point], miniature: list[Point]) -> bytes:
    """Figure 2 as PNG bytes: the paper's panel over the miniature's."""
    return render_panels_png("RECLIP Figure 2: zero-shot accuracy vs training compute", [
        Panel("paper (Table 1)", "TPU-v3 core-hours", paper, "o"),
        miniature_panel(miniature)])


def miniature_panel(points: list[Point]) -> Panel:
    """The panel of measured miniature points (their compute in forward TMACs, their accuracy on the twins)."""
    return Panel("measured: miniature on synthetic twins", "training compute (forward TMACs)", points, "s")


def render_panels_png(title: str, panels: list[Panel]) -> bytes:
    """Accuracy against compute, one row of two axes (classification, retrieval) per panel, as PNG bytes; no
    timestamp or version in the metadata, so equal points give equal bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(len(panels), 2, figsize=(10, 4 * len(panels)), squeeze=False)
    for r, panel in enumerate(panels):
        points = panel.points
        for c, (metric, ylabel) in enumerate([("classification", "zero-shot top-1 (%)"),
                                              ("retrieval", "retrieval, mean R@1 (%)")]):
            ax = axes[r][c]
            for series in dict.fromkeys(p.series for p in points):
                chosen = sorted((p for p in points if p.series == series and getattr(p, metric) is not None),
                                key=lambda p: (p.compute, getattr(p, metric)))
                if chosen:
                    xs, ys = [p.compute for p in chosen], [getattr(p, metric) for p in chosen]
                    ax.errorbar(xs, ys, yerr=_error_bars(chosen, metric), capsize=3, marker=panel.marker,
                                linestyle="-" if "RECLIP" in series else "--", label=series)
            ax.set_xscale("log")
            # Labels at 1, 2, 5 x 10^k: a panel spanning less than a decade still gets some.
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(panel.xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(panel.title, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            if not points:
                ax.text(0.5, 0.5, "not measured yet", ha="center", va="center", transform=ax.transAxes)
            elif ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
