"""reclip-eval data synth: write the synthetic shapes world in the real on-disk formats."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  reclip-eval data synth --out data/        # train shards + zero-shot + retrieval sets of the tasks' world
  reclip-eval --model reclip-demo --task shapes-zeroshot --data-dir data/  # evaluates on them as they are
  reclip-eval data synth --out data/ --sets zeroshot --seed 7 --zeroshot-per-class 50 --workers 8
  reclip-eval data synth --out data/ --no-fine-texture --no-concise-captions   # the original (first) world
  reclip-eval data synth --out data/ --sets lvis --image-size 128           # LVIS-format detection set
  reclip-eval data preresize '/data/laion/{00000..09999}.tar' --out /data/laion-96 --short-side 96 --workers 16
"""


def _at_least(minimum: int):
    """An argparse type: an int >= minimum (a shard of 0 samples or an image of 0 px would fail deep inside)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def add_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reclip-eval data", description="Data utilities.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("synth", help="generate the synthetic shapes world")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--sets", default="train,zeroshot,retrieval",
                   help="comma-separated: train, zeroshot, zeroshot-v2, zeroshot-sketch, zeroshot-r, zeroshot-a, "
                        "zeroshot-texture (shape x fine texture, texture on), probe, retrieval, "
                        "lvis (the LVIS-format detection set)")
    # The defaults are the world the evaluation tasks use (tasks/shapes-*.yaml: seed 1, the fine texture, concise
    # captions), so that a folder written by `data synth --out D` is what `--data-dir D` is read for, as it is;
    # tests/test_first_contact.py checks they agree.
    s.add_argument("--seed", type=int, default=1, help="(default: 1, the evaluation tasks' seed)")
    s.add_argument("--image-size", type=_at_least(1), default=128)
    s.add_argument("--train-samples", type=_at_least(0), default=20000)
    s.add_argument("--samples-per-shard", type=_at_least(1), default=1000)
    s.add_argument("--zeroshot-per-class", type=_at_least(0), default=20)
    s.add_argument("--retrieval-images", type=_at_least(0), default=250)
    s.add_argument("--lvis-train-images", type=_at_least(0), default=400)
    s.add_argument("--lvis-val-images", type=_at_least(0), default=100)
    s.add_argument("--fine-texture", action=argparse.BooleanOptionalAction, default=True,
                   help="give every object the fine texture (read only near full size; benchmarks/world_calibration.py;"
                        " default: on, as the tasks' world)")
    s.add_argument("--concise-captions", action=argparse.BooleanOptionalAction, default=True,
                   help="captions name texture, colour and shape only (data/synth/captions.py says why; default: on, "
                        "as the tasks' world)")
    s.add_argument("--workers", type=int, default=2)
    r = sub.add_parser("preresize", help="rewrite webdataset shards with smaller images (for low-res stages)")
    r.add_argument("shards", help="a folder of .tar files, a glob, or brace notation")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--short-side", type=int, default=96, help="shorter image side after resizing (no upscaling)")
    r.add_argument("--quality", type=int, default=90, help="JPEG quality")
    r.add_argument("--workers", type=int, default=2)
    return p


def run(args: argparse.Namespace) -> int:
    if args.action == "preresize":
        from reclip_eval.data.preresize import PreresizeConfig, preresize_shards
        from reclip_eval.data.shards import list_shards

        summary = preresize_shards(list_shards(args.shards, None), args.out,
                                   PreresizeConfig(args.short_side, args.quality), workers=args.workers)
        print(f"{summary['samples']} samples in {summary['shards']} shards -> {args.out}")
        return 0
    from reclip_eval.data.synth.export import synthesize

    config = synth_config(args)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    for folder in synthesize(args.out, config, sets=sets, workers=args.workers):
        print(folder)
    return 0


def synth_config(args: argparse.Namespace):
    """The SynthConfig that `data synth` arguments ask for (a task's get_data command must ask for its synth)."""
    from reclip_eval.data.synth.export import SynthConfig

    return SynthConfig(seed=args.seed, image_size=args.image_size, train_samples=args.train_samples,
                       samples_per_shard=args.samples_per_shard, zeroshot_per_class=args.zeroshot_per_class,
                       retrieval_images=args.retrieval_images, lvis_train_images=args.lvis_train_images,
                       lvis_val_images=args.lvis_val_images, fine_texture=args.fine_texture,
                       concise_captions=args.concise_captions)
