"""reclip-eval models: the named models (their architecture, recipe and whether weights are available), and the
model kinds `--model` loads (a folder of each, its prefix form)."""

from __future__ import annotations

import argparse

from reclip_eval.hub import HUB_PREFIX


def add_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="reclip-eval models",
                                   description="List the named models (zoo/) and the model kinds.")


def _named_model_rows() -> list[list[str]]:
    from reclip_eval.zoo.entries import list_entries

    rows = []
    for entry in list_entries():
        if entry.checkpoint is None:
            weights = "not published: train it or pass --checkpoint"
        elif entry.checkpoint_path() is not None:
            weights = "bundled" if entry.checkpoint_path().is_dir() else f"missing: {entry.checkpoint_path()}"
        else:
            weights = entry.checkpoint
        config = entry.config()
        arch = (f"ViT {config.vision.width}x{config.vision.layers} p{config.vision.patch_size} @ "
                f"{config.vision.image_size}px / text {config.text.width}x{config.text.layers}")
        rows.append([entry.name, arch, entry.recipe or "-", weights])
    return rows


def _model_kind_rows() -> list[list[str]]:
    from reclip_eval.kinds import model_kinds

    rows = []
    for kind in model_kinds():
        forms = ["DIR", f"{HUB_PREFIX}ORG/NAME"] + ([kind.prefix_form.usage] if kind.prefix_form else [])
        rows.append([kind.name, ", ".join(forms), kind.layout])
    return rows


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    print(tabulate(_named_model_rows(), headers=["model", "architecture", "recipe", "weights"], tablefmt="github"))
    print()
    print(tabulate(_model_kind_rows(), headers=["model kind", "--model", "a folder holds"], tablefmt="github"))
    return 0
