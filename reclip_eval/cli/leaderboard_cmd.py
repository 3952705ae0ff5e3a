"""reclip-eval leaderboard [--check]: regenerate leaderboards/ from results JSON (evaluations, and Table 2's compute
file from `reclip-eval flops`) and the paper's numbers, and model_cards/ (the Hub card of every named model) from
the zoo entries and the same results."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  reclip-eval leaderboard                      # rewrite leaderboards/*.md from leaderboards/results/*.json
                                               #   and leaderboards/results/compute/table2.json,
                                               #   and model_cards/*.md from zoo/*.yaml and the same results
  reclip-eval leaderboard --check              # exit 1 if the committed files differ from a fresh build
  reclip-eval leaderboard --suite datacomp --results results   # print one suite's table (models x its tasks)
"""


def add_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reclip-eval leaderboard", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("leaderboards/results"))
    p.add_argument("--out", type=Path, default=Path("leaderboards"))
    p.add_argument("--cards-out", type=Path, default=None,
                   help="folder of the named models' cards (default: model_cards/ beside --out)")
    p.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    p.add_argument("--suite", help="print this suite's leaderboard (tasks/suites/ name, CLIP_benchmark collection "
                                   "or suite YAML) from --results as markdown, and write nothing")
    return p


def run(args: argparse.Namespace) -> int:
    import sys

    from reclip_eval.cards.model_cards import build_model_cards, orphan_cards
    from reclip_eval.errors import DataError
    from reclip_eval.leaderboard.build import build_leaderboards, stale_files, write_leaderboards

    if not args.results.is_dir():
        raise DataError(f"{args.results}: results folder not found (run evaluations with --output there)")
    if args.suite:
        from reclip_eval.eval.suites import load_suite
        from reclip_eval.leaderboard.measured import load_measured
        from reclip_eval.leaderboard.suite import render_suite

        print(render_suite(load_suite(args.suite), load_measured(args.results)), end="")
        return 0
    try:
        import matplotlib  # noqa: F401
        figure = True
    except ImportError:
        print("matplotlib is not installed: figure2.png is left as it is (pip install 'reclip-eval[plots]')",
              file=sys.stderr)
        figure = False
    files = build_leaderboards(args.results, figure=figure)
    cards = build_model_cards(args.results)  # everything is built before anything is written
    cards_out = args.cards_out or args.out.parent / "model_cards"
    orphans = orphan_cards(cards, cards_out)
    if args.check:
        stale = stale_files(files, args.out) + [str(cards_out / n) for n in stale_files(cards, cards_out) + orphans]
        if stale:
            print(f"leaderboards out of date: {', '.join(stale)}; run `reclip-eval leaderboard`", file=sys.stderr)
            return 1
        print(f"{len(files)} leaderboard files and {len(cards)} model card files up to date")
        return 0
    write_leaderboards(files, args.out)
    write_leaderboards(cards, cards_out)
    for name in orphans:  # the folder holds generated cards only: one no named model renders is removed
        (cards_out / name).unlink()
    print(f"wrote {len(files)} files to {args.out} and {len(cards)} to {cards_out}"
          + (f" (removed {', '.join(orphans)})" if orphans else ""))
    return 0
