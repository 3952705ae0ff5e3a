"""reclip-eval flops [--model NAME]: GMACs per image-text pair for each stage of a model's recipe, beside the
paper's Table 2 where it reports one."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  reclip-eval flops                       # every named model with a Table 2 number: the paper's table, recomputed
  reclip-eval flops --model reclip-64     # every stage of one model's recipe
  reclip-eval flops --recipe mask-112     # every stage of any recipe (Table 10: masking vs resizing)
"""

PAPER_KEY = "compute/gflops_per_sample"


def add_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reclip-eval flops", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a named model (default: those in the paper's Table 2)")
    p.add_argument("--recipe", help="a recipe name or YAML path instead of a named model")
    return p


def recipe_rows(name: str) -> list[dict]:
    from reclip_eval.models.flops import count_sample_compute
    from reclip_eval.train.recipe import load_recipe

    recipe = load_recipe(name)
    config = recipe.model.build(source=name)
    rows = []
    for stage in recipe.stages:
        compute = count_sample_compute(config, stage.image_size, stage.text_length, stage.mask_ratio)
        rows.append({"model": recipe.name, "stage": stage.name, "image_size": stage.image_size,
                     "text_length": stage.text_length, "mask_ratio": stage.mask_ratio,
                     "image_gmacs": compute.image_gmacs, "text_gmacs": compute.text_gmacs,
                     "gmacs": compute.total_gmacs, "paper_gflops": None, "diff_percent": None})
    return rows


def table2_rows(model: str | None = None) -> list[dict]:
    """One row per (model, stage): our GMACs per sample and, for the main stage, the paper's Table 2 value."""
    from reclip_eval.models.flops import count_sample_compute
    from reclip_eval.train.recipe import load_recipe
    from reclip_eval.zoo.cards import list_cards, load_card

    cards = [load_card(model)] if model else [c for c in list_cards()
                                              if any(PAPER_KEY in p.metrics for p in c.paper_results)]
    rows = []
    for card in cards:
        recipe = load_recipe(card.recipe) if card.recipe else None
        paper = next((p.metrics[PAPER_KEY] for p in card.paper_results if PAPER_KEY in p.metrics), None)
        stages = recipe.stages if recipe else []
        config = card.config()
        for index, stage in enumerate(stages):
            compute = count_sample_compute(config, stage.image_size, stage.text_length, stage.mask_ratio)
            main = index == 0  # Table 2 reports the main (low-resolution) training phase
            rows.append({
                "model": card.name, "stage": stage.name, "image_size": stage.image_size,
                "text_length": stage.text_length, "mask_ratio": stage.mask_ratio, "image_gmacs": compute.image_gmacs,
                "text_gmacs": compute.text_gmacs, "gmacs": compute.total_gmacs,
                "paper_gflops": paper if main else None,
                "diff_percent": 100 * (compute.total_gmacs / paper - 1) if main and paper else None,
            })
    return rows


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

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
