"""Data-loader throughput for a low-resolution stage: shards of web-sized JPEGs vs the same shards pre-resized
with `reclip-eval data preresize`, same pipeline (decode, resize to the stage size, tokenize), one run.

    python benchmarks/loader_throughput.py --source-size 448 --short-side 96 --image-size 64 --samples 4000 \\
        --workers 2 --out benchmarks/results/loader_cpu.json

The source shards come from the synthetic world rendered at --source-size (web images are a few hundred pixels
on the short side); throughput is samples/s through `train_batches`, after one warm-up batch per worker.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _common import emit_report


def measure(shards: list[str], image_size: int, batch_size: int, batches: int, workers: int) -> float:
    from reclip_eval.data.shards import train_batches
    from reclip_eval.data.transforms import image_transform
    from reclip_eval.models.config import PreprocessConfig
    from reclip_eval.models.tokenizer import ClipTokenizer

    stream = train_batches(shards, image_transform(image_size, PreprocessConfig()), ClipTokenizer(16),
                           batch_size=batch_size, seed=0, shuffle_buffer=500, workers=workers)
    for _ in range(max(1, workers)):  # warm-up: worker start-up and shuffle buffers
        next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches * batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source-size", type=int, default=448)
    p.add_argument("--short-side", type=int, default=96)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--samples", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)

    from reclip_eval.data.preresize import PreresizeConfig, preresize_shards
    from reclip_eval.data.shards import list_shards
    from reclip_eval.data.synth.export import SynthConfig, write_train_shards

    root = Path(tempfile.mkdtemp(prefix="reclip-loader-"))
    write_train_shards(root, SynthConfig(seed=5, image_size=args.source_size, train_samples=args.samples,
                                         samples_per_shard=500), workers=max(1, args.workers))
    original = list_shards("shapes-train", root)
    preresize_shards(original, root / "small", PreresizeConfig(short_side=args.short_side),
                     workers=max(1, args.workers))
    small = list_shards(str(root / "small"), None)
    size = {name: sum(os.path.getsize(s) for s in shards) for name, shards in (("original", original),
                                                                              ("preresized", small))}
    rate = {name: measure(shards, args.image_size, args.batch_size, args.batches, args.workers)
            for name, shards in (("original", original), ("preresized", small))}
    report = {
        "benchmark": "training data loader, samples/s (decode + resize + tokenize)",
        "command": " ".join([sys.executable, *sys.argv]),
        "device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "source_size": args.source_size, "short_side": args.short_side, "stage_image_size": args.image_size,
        "workers": args.workers, "batch_size": args.batch_size, "batches": args.batches,
        "bytes_per_sample": {k: v / args.samples for k, v in size.items()},
        "samples_per_second": rate, "speedup_preresized_over_original": rate["preresized"] / rate["original"],
    }
    return emit_report(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
