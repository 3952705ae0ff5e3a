"""Where the high-resolution finetune starts (issue #36, design row (0): leaderboards/finetune-ablation-design.md).

For one low-resolution checkpoint: zero-shot, retrieval and fine-texture metrics at its own size, at the finetune's
size with the position table upsampled by each mode, and at the finetune's size on images whose detail is cut to
the low size (bicubic down, bicubic back up), so "new token grid" and "new detail" are measured apart; and the
contrastive loss of the finetune stream's first batch under each mode (the stream the recipe's finetune stage
would draw: its stage index, the recipe's seed and data-stream seeding), beside ln(batch) for random embeddings.

    python scripts/finetune_start.py runs/ablation/reclip-32-s0/stages/lowres --recipe mini-reclip-32 seed=0 \
        --out leaderboards/results/finetune-ablation/start-s0.json

Nothing is trained; the output JSON is written exclusively (an existing file is never replaced).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

MODES = ("bilinear", "bicubic", "nearest")
TASKS = ("shapes-zeroshot", "shapes-retrieval", "shapes-texture")


class DetailCut:
    """A PIL image with its detail cut to `size` px (short side; bicubic down, bicubic back to the stored size),
    then `transform`. A class, not a closure, so DataLoader workers can pickle it."""

    def __init__(self, transform, size: int):
        self.transform, self.size = transform, size

    def __call__(self, image):
        from PIL import Image

        width, height = image.size
        scale = self.size / min(width, height)
        small = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BICUBIC)
        return self.transform(small.resize((width, height), Image.BICUBIC))


def model_at(checkpoint: Path, image_size: int, mode: str):
    """The checkpoint's model at `image_size`, its position table resampled with `mode` (aligned corners for the
    interpolating modes, as the recipe's default)."""
    from reclip_eval.checkpoint import load_model

    model = load_model(checkpoint)
    resample = dataclasses.replace(model.config.pos_embed_resample, mode=mode)
    model.config = dataclasses.replace(model.config, pos_embed_resample=resample)
    model.set_image_size(image_size)
    return model.eval()


def evaluate_condition(model, label: str, data_dir: str | None, workers: int, cut: int | None) -> dict[str, Any]:
    from reclip_eval.api import evaluate
    from reclip_eval.zoo.reclip import ReclipAdapter

    adapter = ReclipAdapter(model, label).place("cpu", "fp32")
    if cut is not None:
        adapter.transform = DetailCut(adapter.transform, cut)
    metrics = {}
    for task in TASKS:
        results = evaluate(adapter, task, data_dir=data_dir, workers=workers)
        metrics.update({f"{task}/{k}": v for k, v in results["metrics"].items()})
    return metrics


def first_batch_loss(model, recipe, stage_index: int, data_dir: Path | None, workers: int) -> float:
    """The contrastive loss of stage `stage_index`'s first batch (its transform, tokens and stream seed), as the
    trainer's first step computes it, without a gradient."""
    import torch

    from reclip_eval.data.shards import train_batches
    from reclip_eval.train.loop import prepare_shards
    from reclip_eval.train.slip import training_loss
    from reclip_eval.train.stage_setup import caption_tokens, stage_transform, stream_seed

    stage = recipe.stages[stage_index]
    shards = prepare_shards(recipe, data_dir, workers)
    tokenize, _ = caption_tokens(recipe, stage_index, 0, None)
    batches = train_batches(shards, stage_transform(stage, model.config.preprocess), tokenize,
                            augment=bool(stage.augment), batch_size=stage.batch_size,
                            seed=stream_seed(recipe, stage_index), shuffle_buffer=recipe.data.shuffle_buffer,
                            workers=workers)
    pixels, tokens = next(iter(batches))
    model.train()
    with torch.no_grad():
        loss = training_loss(model(pixels, tokens), None)
    model.eval()
    return float(loss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="the low-resolution phase's checkpoint folder")
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. seed=1 (as `reclip-eval train`)")
    parser.add_argument("--recipe", default="mini-reclip-32", help="the recipe whose finetune stage is studied")
    parser.add_argument("--stage", type=int, default=1, help="index of the finetune stage in the recipe")
    parser.add_argument("--data-dir", help="data root (tasks and training shards), as reclip-eval's")
    parser.add_argument("--workers", type=int, default=None,
                        help="loader workers (default: the recipe's data.workers, so the first batch is the trainer's)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write (never replaced)")
    args = parser.parse_args(argv)

    from reclip_eval.atomic import create_text_exclusive
    from reclip_eval.checkpoint import read_config
    from reclip_eval.train.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)  # every input checked before a model is built
    if not 0 < args.stage < len(recipe.stages):
        parser.error(f"--stage {args.stage}: the recipe {recipe.name} has stages 0..{len(recipe.stages) - 1}; "
                     "the finetune is a stage after the first")
    if args.out.exists():
        parser.error(f"{args.out}: exists; results are never replaced (choose another --out)")
    low = read_config(args.checkpoint).vision.image_size
    high = recipe.stages[args.stage].image_size
    workers = recipe.data.workers if args.workers is None else args.workers
    data_dir = Path(args.data_dir) if args.data_dir else None

    conditions: dict[str, Any] = {"native": {"image_size": low, "metrics": evaluate_condition(
        model_at(args.checkpoint, low, "bilinear"), f"{args.checkpoint}@{low}px", args.data_dir, workers, None)}}
    for mode in MODES:
        model = model_at(args.checkpoint, high, mode)
        conditions[f"{high}px-{mode}"] = {
            "image_size": high, "pos_embed_resample": mode,
            "metrics": evaluate_condition(model, f"{args.checkpoint}@{high}px-{mode}", args.data_dir, workers, None),
            "first_batch_loss": first_batch_loss(model, recipe, args.stage, data_dir, workers)}
        conditions[f"{high}px-{mode}-detail{low}"] = {
            "image_size": high, "pos_embed_resample": mode, "detail_cut_to": low,
            "metrics": evaluate_condition(model, f"{args.checkpoint}@{high}px-{mode}-cut{low}", args.data_dir,
                                          workers, low)}
    record = {"checkpoint": str(args.checkpoint), "recipe": recipe.name, "overrides": args.overrides,
              "finetune_stage": recipe.stages[args.stage].name, "chance_loss": math.log(recipe.stages[args.stage]
                                                                                           .batch_size),
              "command": " ".join(["python", "scripts/finetune_start.py", *(argv if argv is not None else sys.argv[1:])]),
              "conditions": conditions}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    create_text_exclusive(args.out, json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: {m: round(100 * v, 2) for m, v in c["metrics"].items() if m.endswith("top1")}
                      for k, c in conditions.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
