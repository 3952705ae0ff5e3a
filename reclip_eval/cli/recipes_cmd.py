"""reclip-eval recipes: the training recipes and their stages."""

from __future__ import annotations

import argparse


def add_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="reclip-eval recipes", description="List the training recipes (training/).")


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from reclip_eval.registry import named_yaml_files
    from reclip_eval.train.recipe import load_recipe

    rows = []
    for name in named_yaml_files("training"):
        recipe = load_recipe(name)
        stages = " -> ".join(f"{s.name} {s.image_size}px/{s.text_length}tok"
                             f"{f' mask {s.mask_ratio:g}' if s.mask_ratio else ''} x{s.steps}" for s in recipe.stages)
        rows.append([name, stages])
    print(tabulate(rows, headers=["recipe", "stages"], tablefmt="github"))
    return 0
