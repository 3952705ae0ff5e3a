"""reclip-eval models: the named models, their architecture, recipe and whether weights are available."""

from __future__ import annotations

import argparse


def add_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="reclip-eval models", description="List the named models (model_cards/).")


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from reclip_eval.zoo.cards import list_cards

    rows = []
    for card in list_cards():
        if card.checkpoint is None:
            weights = "not published: train it or pass --checkpoint"
        elif card.checkpoint_path() is not None:
            weights = "bundled" if card.checkpoint_path().is_dir() else f"missing: {card.checkpoint_path()}"
        else:
            weights = card.checkpoint
        config = card.config()
        arch = (f"ViT {config.vision.width}x{config.vision.layers} p{config.vision.patch_size} @ "
                f"{config.vision.image_size}px / text {config.text.width}x{config.text.layers}")
        rows.append([card.name, arch, card.recipe or "-", weights])
    print(tabulate(rows, headers=["model", "architecture", "recipe", "weights"], tablefmt="github"))
    return 0
