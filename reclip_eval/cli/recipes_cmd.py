"""reclip-eval recipes: the training recipes and their stages."""

from __future__ import annotations

import argparse


def add_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="reclip-eval recipes", description="List the training recipes (training/).")


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from reclip_eval.detect.config import load_detect_recipe
    from reclip_eval.registry import named_yaml_files
    from reclip_eval.train.recipe import clip_recipe_files, load_recipe

    rows = []
    clip_recipes = clip_recipe_files()
    for name in named_yaml_files("training"):
        if name not in clip_recipes:  # a detector recipe (reclip-eval detect train)
            d = load_detect_recipe(name)
            rows.append([name, f"detector {d.detector.backbone.image_size}px x{d.schedule.steps} "
                               f"(batch {d.schedule.batch_size}; reclip-eval detect train)"])
            continue
        recipe = load_recipe(name)
        stages = " -> ".join(f"{s.name} {s.image_size}px/{s.text_length}tok"
                             f"{f' {s.image_tokens.describe()}' if s.image_tokens.masks else ''} x{s.steps}" for s in recipe.stages)
        rows.append([name, stages])
    print(tabulate(rows, headers=["recipe", "stages"], tablefmt="github"))
    return 0
