"""reclip-eval flops [--model NAME | --recipe NAME]: GMACs per image-text pair for each stage of a model's recipe,
beside the paper's Table 2 where it reports one; the rows are also written as a compute results file, which the
leaderboard reads (it never counts FLOPs itself)."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  reclip-eval flops                       # every named model with a Table 2 number: the paper's table, recomputed
                                          #   (writes results/compute/table2.json)
  reclip-eval flops --model reclip-64     # every stage of one model's recipe (results/compute/model__reclip-64.json)
  reclip-eval flops --recipe mask-112     # every stage of any recipe (Table 10: masking vs resizing)
  reclip-eval flops --output leaderboards/results   # the committed table2.json that the leaderboard reads
"""


def add_parser() -> argparse.ArgumentParser:
    from reclip_eval.compute_results import DEFAULT_RESULTS_DIR

    p = argparse.ArgumentParser(prog="reclip-eval flops", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a named model (default: those in the paper's Table 2)")
    p.add_argument("--recipe", help="a recipe name or YAML path instead of a named model")
    p.add_argument("--output", type=Path, default=DEFAULT_RESULTS_DIR,
                   help=f"results folder; the rows go to its compute/ sub-folder (default: ./{DEFAULT_RESULTS_DIR}; "
                        "the committed table is written with --output leaderboards/results)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a compute results file that holds other rows; without it such a file is kept and "
                        "the run refused")
    return p


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from reclip_eval.compute import count_compute
    from reclip_eval.compute_results import compute_results_path, store_compute_results

    results = count_compute(model=args.model, recipe=args.recipe)
    rows = results["rows"]
    print(tabulate(
        [[r["model"], r["stage"], r["image_size"], f"{r['text_length']} ({r['text_tokens']})",
          f"{r['image_tokens_kept']} ({r['image_tokens']})", f"{r['image_gmacs']:.2f}",
          f"{r['text_gmacs']:.2f}", f"{r['gmacs']:.2f}",
          "" if r["paper_gflops"] is None else r["paper_gflops"],
          "" if r["diff_percent"] is None else f"{r['diff_percent']:+.1f}%"] for r in rows],
        headers=["model", "stage", "image px", "text tokens", "image tokens", "image GMACs", "text GMACs", "total GMACs",
                 "paper Table 2", "diff"], tablefmt="github"))
    print("\nGMACs per image-text pair, forward pass (FLOPs/2, matrix products only), counted by "
          "torch.utils.flop_counter on the model definitions; the paper's Table 2 reports the main training phase.")
    path = compute_results_path(args.output, results["selection"])
    action, replaced = store_compute_results(results, path, overwrite=args.overwrite)
    said = {"written": "written", "kept": "the same rows are there already, kept", "replaced": "replaced"}[action]
    print(f"{said}: {path}" + (f" ({'; '.join(replaced)})" if replaced else ""))
    return 0
