"""reclip-eval config show RECIPE [key=value ...]: the fully resolved recipe, every stage complete."""

from __future__ import annotations

import argparse


def add_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reclip-eval config", description="Show resolved configs.")
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("show", help="print a recipe with stage inheritance and overrides applied")
    s.add_argument("recipe")
    s.add_argument("overrides", nargs="*")
    return p


def run(args: argparse.Namespace) -> int:
    from reclip_eval.train.recipe import load_recipe, recipe_to_yaml

    print(recipe_to_yaml(load_recipe(args.recipe, args.overrides)), end="")
    return 0
