"""reclip-eval train --recipe RECIPE --out DIR: run a recipe's stages and write a checkpoint in the Hub layout."""

from __future__ import annotations

import argparse
from pathlib import Path

INTERMIXED = True
EPILOG = """examples:
  reclip-eval train --recipe mini-reclip-32 --out runs/demo
  reclip-eval train --recipe mini-reclip-32 --out runs/quick stages.0.steps=200 stages.1.steps=50
  reclip-eval train --recipe training/my_recipe.yaml --out runs/mine --data-dir /data --device cuda
  torchrun --nproc_per_node=8 -m reclip_eval train --recipe reclip-64 --out runs/reclip-64 \\
      data.shards=/data/{00000..09999}.tar
  torchrun --nproc_per_node=8 -m reclip_eval train --recipe reclip-64 --out runs/fsdp data_parallel=fsdp  # sharded
  reclip-eval train --recipe mini-reclip-32 --out runs/jax --backend jax   # the flax model's jit step, all devices
  reclip-eval train mini-reclip-32 --out runs/demo   # the older form, the recipe first: still accepted
"""


def add_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reclip-eval train", description="Train a model from a recipe.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", help="recipe name (training/) or YAML path (as `detect train --recipe`)")
    # The older form `train RECIPE ...` is still accepted: without --recipe, the first word is the recipe.
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides, e.g. stages.0.steps=100")
    p.add_argument("--out", type=Path, required=True,
                   help="run folder: new, empty, or this run's own (--resume); other files in it are never deleted")
    p.add_argument("--data-dir", type=Path, help="data root for the recipe's shards (default: $RECLIP_DATA/cache)")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", choices=("torch", "jax"), default="torch",
                   help="torch (default), or jax: the flax model's jit step over all local devices, same recipe, "
                        "data, initial weights and outputs (needs the jax extra; AdamW, fp32)")
    p.add_argument("--workers", type=int, help="data loader workers (default: the recipe's)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest intact resume point (same recipe, overrides, "
                        "process count, --workers and shards: checked)")
    p.add_argument("--wandb", metavar="PROJECT",
                   help="also log the curves to this Weights & Biases project (needs `pip install wandb`; "
                        "WANDB_MODE=offline works without network); --resume continues the same W&B run")
    return p


def recipe_and_overrides(recipe: str | None, words: list[str]) -> tuple[str, list[str]]:
    """The recipe (--recipe, or the first word in the older form) and the key=value overrides."""
    from reclip_eval.errors import ReclipError

    if recipe is None:
        if not words or "=" in words[0]:
            raise ReclipError("train: no recipe given: pass --recipe NAME (a name `reclip-eval recipes` lists, or a "
                              "YAML path)")
        recipe, words = words[0], words[1:]
    not_overrides = [w for w in words if "=" not in w]
    if not_overrides:
        raise ReclipError(f"train: {', '.join(map(repr, not_overrides))}: expected key=value overrides after the "
                          f"recipe ({recipe}), e.g. stages.0.steps=100")
    return recipe, words


def run(args: argparse.Namespace) -> int:
    from reclip_eval.distributed import is_main_process
    from reclip_eval.train.recipe import load_recipe

    recipe = load_recipe(*recipe_and_overrides(args.recipe, args.overrides))
    if args.backend == "jax":
        from reclip_eval.jax_train.trainer import train_jax as train
    else:
        from reclip_eval.train.loop import train
    from reclip_eval.zoo.init_weights import load_init

    # A recipe's init checkpoint, loaded through the zoo (above the trainers) before the run folder is touched.
    init = load_init(recipe.init) if recipe.init is not None else None
    _, reports = train(recipe, args.out, data_dir=args.data_dir, device=args.device, workers=args.workers,
                       resume=args.resume, wandb_project=args.wandb, init=init)
    if not is_main_process():
        return 0
    for r in reports:
        print(f"stage {r.name}: {r.steps} steps at {r.image_size}px, loss {r.losses[0]:.3f} -> {r.losses[-1]:.3f}, "
              f"{r.wall_time_s:.0f}s")
    print(f"checkpoint: {args.out}")
    return 0
