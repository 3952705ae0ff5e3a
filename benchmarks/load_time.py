"""Checkpoint load time: the model built on the meta device with the file's tensors assigned (the loader's path)
vs built with its random initialisation and then overwritten tensor by tensor (the former path), on the CPU.

    python benchmarks/load_time.py --preset vit-l16-text12x1024 --runs 5 --out benchmarks/results/load_time_cpu.json

A checkpoint of the preset with random weights is written to a temporary folder first (float32, as
`save_checkpoint` writes by default); each run is one `checkpoint.load_model` call, the two paths alternating so
that the page cache and the allocator treat them alike. Reported: the median seconds of each path, and the
median time to read the safetensors file alone (what neither path can avoid).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import emit_report

PATHS = ("random", "meta")  # checkpoint.load_model's `init`: the former path, then the loader's


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="vit-l16-text12x1024")
    p.add_argument("--runs", type=int, default=5, help="timed loads per path (the median is reported)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error(f"--runs must be >= 1, got {args.runs}")

    import torch

    from reclip_eval.checkpoint import WEIGHTS_NAME, load_model, read_weights, save_checkpoint
    from reclip_eval.models import CLIP, build_config

    folder = Path(tempfile.mkdtemp(prefix="reclip-load-time-"))
    try:
        model = CLIP(build_config(args.preset))
        parameters = sum(p.numel() for p in model.parameters())
        save_checkpoint(model, folder / "ck")
        del model
        weights = folder / "ck" / WEIGHTS_NAME
        load_model(folder / "ck")  # warm-up: the file into the page cache, lazy imports, allocator
        times: dict[str, list[float]] = {path: [] for path in PATHS}
        read_only = []
        for _ in range(args.runs):
            for path in PATHS:
                times[path].append(_seconds(lambda path=path: load_model(folder / "ck", init=path)))
            read_only.append(_seconds(lambda: read_weights(weights)))
        file_bytes = weights.stat().st_size
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    median = {path: statistics.median(values) for path, values in times.items()}
    report = {
        "benchmark": "checkpoint.load_model seconds on the CPU: meta-device build + assign vs random init + copy",
        "command": " ".join([sys.executable, *sys.argv]),
        "device": f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                  f"{torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "preset": args.preset, "parameters": parameters, "file_bytes": file_bytes, "runs": args.runs,
        "seconds": times,
        "median_seconds": {**median, "read_weights_only": statistics.median(read_only)},
        "speedup_meta_over_random": median["random"] / median["meta"],
    }
    return emit_report(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
