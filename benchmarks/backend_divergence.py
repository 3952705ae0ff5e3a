"""Why the torch and the jax trainer's runs of one recipe end apart: where their loss curves part, and whether a
stage's outcome is fixed by the weights it starts from. The diagnostics behind leaderboards/backends.md
(leaderboards/miniature-notes.md, "One recipe on the torch and the jax trainer").

Not a test. Two subcommands:

- `finetune CKPT`: the recipe's last stage alone, started from CKPT (a checkpoint of the stage before it, such as
  a run's stages/lowres), on the torch or the jax trainer, reading seed S's data stream for that stage. Neither
  trainer has an option to start from a checkpoint (a run starts from the recipe's seeded initialisation), so
  this script swaps the function both call for their first weights (`build_model`) for one that loads CKPT.
- `curves RUN...`: the first step where two runs' per-step training losses differ by more than --tol: from a
  run's training.json (all stages, or one with --stage), or, for a run stopped early, its TensorBoard
  `train/loss` (train it with log_every=1).

    python benchmarks/backend_divergence.py finetune runs/mini/reclip-32-jax-s1/stages/lowres --seed 1 \\
        --backend torch --out runs/diag/torch-from-jax-s1
    reclip-eval --model runs/diag/torch-from-jax-s1 --task shapes-zeroshot,shapes-retrieval,shapes-texture \\
        --output benchmarks/results/backend_divergence
    OMP_NUM_THREADS=1 reclip-eval train mini-reclip-32 --out runs/diag/threads1 log_every=1   # stop it at ~300 steps
    OMP_NUM_THREADS=2 reclip-eval train mini-reclip-32 --out runs/diag/threads2 log_every=1   # the same
    python benchmarks/backend_divergence.py curves runs/mini/reclip-32-jax zoo/reclip-demo runs/diag/threads1 \\
        runs/diag/threads2 --out benchmarks/results/backend_divergence/curves.json
    python benchmarks/backend_divergence.py curves runs/mini/reclip-32-jax-s1 runs/diag/torch-from-jax-s1 \\
        --stage hires --out benchmarks/results/backend_divergence/finetune_curves.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

from _common import emit_report


def finetune(checkpoint: Path, recipe_name: str, overrides: list[str], seed: int, backend: str, out: Path, *,
             data_dir: Path | None, workers: int | None) -> int:
    from reclip_eval.checkpoint import load_model
    from reclip_eval.train import loop
    from reclip_eval.train.recipe import load_recipe
    from reclip_eval.train.stage_setup import stream_seed

    recipe = load_recipe(recipe_name, overrides)
    last = len(recipe.stages) - 1
    # Run alone (as stage index 0), the last stage reads the stream it read in the run: the one of (seed, its own
    # index), whichever seeding the recipe uses (train/stage_setup.py stream_seed; the jax trainer draws through loop too).
    original = dataclasses.replace(recipe, seed=seed)
    alone = dataclasses.replace(recipe, seed=seed, stages=[recipe.stages[last]])
    loop.stream_seed = lambda _recipe, _index, rank=0: stream_seed(original, last, rank)

    def from_checkpoint(_recipe, _init=None):
        return load_model(checkpoint).float()  # stage checkpoints may be saved in float16

    loop.build_model = from_checkpoint
    if backend == "jax":
        from reclip_eval.jax_train import trainer

        trainer.build_model = from_checkpoint
        trainer.train_jax(alone, out, data_dir=data_dir, workers=workers)
    else:
        loop.train(alone, out, data_dir=data_dir, workers=workers)
    losses = json.loads((out / "training.json").read_text())["stages"][0]["losses"]
    return emit_report({"checkpoint": str(checkpoint), "recipe": recipe_name, "stage": recipe.stages[last].name,
                        "seed": seed, "backend": backend, "out": str(out), "loss_first": losses[0],
                        "loss_last": losses[-1]}, None)


def run_losses(run: Path, stage: str | None = None) -> dict[int, float]:
    """Per-step losses of a finished run (training.json): over all its stages, or over stage `stage` alone (steps
    counted from that stage's start); else, for a run stopped early, its TensorBoard train/loss."""
    record = run / "training.json"
    if record.is_file():
        stages = json.loads(record.read_text())["stages"]
        if stage is not None:
            stages = [s for s in stages if s["name"] == stage]
            if not stages:
                raise SystemExit(f"{record}: no stage named {stage!r}")
        return dict(enumerate(itertools.chain.from_iterable(s["losses"] for s in stages)))
    if stage is not None or not (run / "tensorboard").is_dir():
        raise SystemExit(f"{run}: expected a finished run's training.json"
                         + ("" if stage is not None else " or a tensorboard/ folder (a run logged with log_every=1)"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {e.step: e.value for e in events.Scalars("train/loss")}


def first_difference(a: dict[int, float], b: dict[int, float], tol: float) -> int | None:
    return next((step for step in sorted(a.keys() & b.keys()) if abs(a[step] - b[step]) > tol), None)


def curves(runs: list[Path], tol: float, stage: str | None, out: Path | None) -> int:
    losses = {str(run): run_losses(run, stage) for run in runs}
    pairs = [{"a": a, "b": b, "common_steps": len(losses[a].keys() & losses[b].keys()),
              "first_step_apart": first_difference(losses[a], losses[b], tol),
              "max_abs_difference": round(max(abs(losses[a][s] - losses[b][s])
                                              for s in losses[a].keys() & losses[b].keys()), 4)}
             for a, b in itertools.combinations(losses, 2)]
    shown = [0, 50, 60, 70, 80, 90, 100, 150, 200]
    return emit_report({"tol": tol, "stage": stage, "pairs": pairs,
                        "losses_at": {name: {s: round(c[s], 4) for s in shown if s in c} for name, c in losses.items()},
                        "loss_last": {name: round(c[max(c)], 4) for name, c in losses.items()}},
                       out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("finetune", help="the recipe's last stage alone, from a checkpoint")
    f.add_argument("checkpoint", type=Path)
    f.add_argument("--recipe", default="mini-reclip-32")
    f.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a recipe override, as `reclip-eval train` takes them (repeatable)")
    f.add_argument("--data-dir", type=Path, help="where the recipe's shards are (default: the cache)")
    f.add_argument("--workers", type=int, help="data-loader workers (default: the recipe's)")
    f.add_argument("--seed", type=int, required=True, help="whose data stream the stage reads")
    f.add_argument("--backend", choices=["torch", "jax"], required=True)
    f.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("curves", help="the first step where runs' losses differ by more than --tol")
    c.add_argument("runs", type=Path, nargs="+")
    c.add_argument("--tol", type=float, default=1e-3)
    c.add_argument("--stage", help="compare this stage's losses only (finished runs)")
    c.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "finetune":
        return finetune(args.checkpoint, args.recipe, args.overrides, args.seed, args.backend, args.out,
                        data_dir=args.data_dir, workers=args.workers)
    if len(args.runs) < 2:
        parser.error("curves: give at least two runs")
    return curves(args.runs, args.tol, args.stage, args.out)


if __name__ == "__main__":
    sys.exit(main())
