"""Compute per image-text pair of named models and recipes, stage by stage, beside the paper's Table 2; counted
from the model definitions, and kept as a compute results file (reclip_eval/compute_results.py) for the
leaderboard, which never counts."""

from __future__ import annotations

from typing import Any

from reclip_eval.compute_results import TABLE2, build_compute_results

PAPER_KEY = "compute/gflops_per_sample"


def stage_row(model: str, stage, config, paper: float | None = None, slip=None) -> dict:
    """One stage's compute per sample, with the tokens each tower computes on after reduction; with SLIP's branch
    (`slip`) its two extra views through the image tower and head are part of the image GMACs."""
    from reclip_eval.train.slip import count_stage_compute

    compute, slip_gmacs = count_stage_compute(config, stage, slip)
    total = compute.total_gmacs
    return {"model": model, "stage": stage.name, "image_size": stage.image_size,
            "text_length": stage.text_length, "text_tokens": stage.text_tokens.describe(),
            "image_tokens": stage.image_tokens.describe(), "image_tokens_kept": compute.image_tokens,
            "image_gmacs": compute.image_gmacs, "text_gmacs": compute.text_gmacs, "gmacs": total,
            **({"slip_gmacs": slip_gmacs} if slip is not None else {}),
            "paper_gflops": paper, "diff_percent": 100 * (total / paper - 1) if paper else None}


def recipe_rows(name: str) -> list[dict]:
    from reclip_eval.train.recipe import load_recipe

    recipe = load_recipe(name)
    if recipe.model is None:  # the architecture is the init checkpoint's (train/init_from.py)
        from reclip_eval.zoo.init_weights import load_init

        config = load_init(recipe.init).config
    else:
        config = recipe.model.build(source=name)
    return [stage_row(recipe.name, stage, config, slip=recipe.slip) for stage in recipe.stages]


def table2_rows(model: str | None = None) -> list[dict]:
    """One row per (model, stage): our GMACs per sample and, for the main stage, the paper's Table 2 value."""
    from reclip_eval.train.recipe import load_recipe
    from reclip_eval.zoo.entries import list_entries, load_entry

    entries = [load_entry(model)] if model else list_entries()
    rows = []
    for entry in entries:
        paper = next((p.values[PAPER_KEY] for p in entry.paper_numbers() if PAPER_KEY in p.values), None)
        if paper is None and not model:
            continue  # every named model with a paper Table 2 number
        recipe = load_recipe(entry.recipe) if entry.recipe else None
        config = entry.config()
        # Table 2 reports the main (low-resolution) training phase: the first stage.
        rows += [stage_row(entry.name, stage, config, paper if index == 0 else None, recipe.slip)
                 for index, stage in enumerate(recipe.stages if recipe else [])]
    return rows


def count_compute(*, model: str | None = None, recipe: str | None = None) -> dict[str, Any]:
    """The compute results of a recipe's stages, of one named model's, or (neither) of every named model with a
    paper Table 2 number; with the `reclip-eval flops` command that reproduces them."""
    from reclip_eval.eval.results import software_versions

    if recipe:
        selection, rows, flag = {"recipe": recipe}, recipe_rows(recipe), f" --recipe {recipe}"
    elif model:
        selection, rows, flag = {"model": model}, table2_rows(model), f" --model {model}"
    else:
        selection, rows, flag = dict(TABLE2), table2_rows(), ""
    return build_compute_results(selection, rows, command="reclip-eval flops" + flag, software=software_versions())
