"""reclip-eval leaderboard [--check]: regenerate leaderboards/ from results JSON (evaluations, and Table 2's compute
file from `reclip-eval flops`) and the paper's numbers."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  reclip-eval leaderboard                      # rewrite leaderboards/*.md from leaderboards/results/*.json
                                               #   and leaderboards/results/compute/table2.json
  reclip-eval leaderboard --check              # exit 1 if the committed files differ from a fresh build
"""


def add_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reclip-eval leaderboard", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("leaderboards/results"))
    p.add_argument("--out", type=Path, default=Path("leaderboards"))
    p.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    return p


def run(args: argparse.Namespace) -> int:
    import sys

    from reclip_eval.errors import DataError
    from reclip_eval.leaderboard.build import build_leaderboards, stale_files, write_leaderboards

    if not args.results.is_dir():
        raise DataError(f"{args.results}: results folder not found (run evaluations with --output there)")
    try:
        import matplotlib  # noqa: F401
        figure = True
    except ImportError:
        print("matplotlib is not installed: figure2.png is left as it is (pip install 'reclip-eval[plots]')",
              file=sys.stderr)
        figure = False
    files = build_leaderboards(args.results, figure=figure)
    if args.check:
        stale = stale_files(files, args.out)
        if stale:
            print(f"leaderboards out of date: {', '.join(stale)}; run `reclip-eval leaderboard`", file=sys.stderr)
            return 1
        print(f"{len(files)} leaderboard files up to date")
        return 0
    write_leaderboards(files, args.out)
    print(f"wrote {len(files)} files to {args.out}")
    return 0
