"""reclip-eval flops [--model NAME]: GMACs per image-text pair for each stage of a model's recipe, beside the
paper's Table 2 where it reports one."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  reclip-eval flops                       # every named model with a Table 2 number: the paper's table, recomputed
  reclip-eval flops --model reclip-64     # every stage of one model's recipe
  reclip-eval flops --recipe mask-112     # every stage of any recipe (Table 10: masking vs resizing)
"""

def add_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reclip-eval flops", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a named model (default: those in the paper's Table 2)")
    p.add_argument("--recipe", help="a recipe name or YAML path instead of a named model")
    return p


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from reclip_eval.compute import recipe_rows, table2_rows

    rows = recipe_rows(args.recipe) if args.recipe else table2_rows(args.model)
    print(tabulate(
        [[r["model"], r["stage"], r["image_size"], r["text_length"], f"{r['mask_ratio']:g}", f"{r['image_gmacs']:.2f}",
          f"{r['text_gmacs']:.2f}", f"{r['gmacs']:.2f}",
          "" if r["paper_gflops"] is None else r["paper_gflops"],
          "" if r["diff_percent"] is None else f"{r['diff_percent']:+.1f}%"] for r in rows],
        headers=["model", "stage", "image px", "text tokens", "mask", "image GMACs", "text GMACs", "total GMACs",
                 "paper Table 2", "diff"], tablefmt="github"))
    print("\nGMACs per image-text pair, forward pass (FLOPs/2, matrix products only), counted by "
          "torch.utils.flop_counter on the model definitions; the paper's Table 2 reports the main training phase.")
    return 0
