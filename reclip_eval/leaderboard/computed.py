"""Rows computed by this project rather than measured (Table 2's GMACs per sample), read from the compute results
file that `reclip-eval flops` writes: the leaderboard never counts FLOPs itself, so it stays a function of files."""

from __future__ import annotations

from pathlib import Path

from reclip_eval.compute_results import TABLE2, compute_results_path, read_compute_results
from reclip_eval.leaderboard.measured import LeaderboardInputError


def table2_computed_rows(results_dir: Path) -> list[list[str]] | None:
    """Table 2's computed rows (the main stage of each model the paper reports), beside the paper's GFLOPs; None when
    the results folder has no Table 2 compute file."""
    path = compute_results_path(results_dir, TABLE2)
    if not path.is_file():
        return None
    data = read_compute_results(path, LeaderboardInputError)
    if data.get("selection") != TABLE2:
        raise LeaderboardInputError(f"{path}: counts {data.get('selection')}, not {TABLE2}; run `reclip-eval flops`")
    return [["computed", f"{r['model']} ({r['image_size']} px, text {r['text_length']})", f"{r['gmacs']:.2f}"]
            for r in data["rows"] if r["paper_gflops"] is not None]
