"""Reading CLIP_benchmark webdataset eval sets: reclip-eval's reader vs CLIP_benchmark's (`build_wds_dataset`, a
webdataset pipeline), same shards, same transform, same DataLoader workers and batch size, one run.

    python benchmarks/wds_reader.py --images 2000 --workers 2 --repeats 3 --out benchmarks/results/wds_reader_cpu.json

The shards are written by CLIP_benchmark's own exporter (`clip_benchmark.webdataset_builder.convert_dataset`) from
photo-sized JPEGs (--photo-size, 500x375 by default: drawn smooth colour fields with fine noise, quality 90). Each
timed pass reads the whole set: ours indexes the shards (tar headers, label members) and decodes every image in the
DataLoader's workers, theirs streams the tars through webdataset (shards split across workers) and decodes there;
both apply the same transform (resize the shorter side, centre crop, normalise) at each --image-sizes size. Timed
passes alternate between the two readers (--repeats rounds, after one warm-up of each), and the min and median
seconds are reported with images/s and ours / theirs; the machine's load average is recorded before and after, so
numbers from a shared machine are indicative only. Both readers must yield the same images with the same pixels.
With fewer shards than workers CLIP_benchmark's loader fails (webdataset gives a worker without a shard nothing);
that failure is recorded instead of its timings (try --shard-size equal to --images).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from _common import emit_report

NUM_CLASSES = 10


def write_photos(folder: Path, count: int, width: int, height: int) -> list[tuple[str, int]]:
    """`count` deterministic photo-like JPEGs (smooth colour fields plus fine noise) and their labels."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    draw = np.random.default_rng(0)
    samples = []
    for index in range(count):
        coarse = Image.fromarray(draw.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height),
                                                                                          Image.BICUBIC)
        noisy = np.asarray(coarse, dtype=np.int16) + draw.integers(-12, 13, (height, width, 3), dtype=np.int16)
        path = folder / f"{index:06d}.jpg"
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        samples.append((str(path), index % NUM_CLASSES))
    return samples


class _Exportable(list):
    """What CLIP_benchmark's convert_dataset takes: (image, label) pairs with `.classes` and `.templates`."""

    classes = [f"class {i}" for i in range(NUM_CLASSES)]
    templates = ["a photo of a {c}."]


def export_shards(samples: list[tuple[str, int]], out: Path, shard_size: int) -> Path:
    from clip_benchmark.webdataset_builder import convert_dataset, path_to_bytes

    convert_dataset(_Exportable(samples), "test", str(out), transform=path_to_bytes, image_format="jpg",
                    max_count=shard_size, verbose=False)
    return out


def read_ours(root: Path, transform, batch_size: int, workers: int):
    """reclip-eval's reader as evaluation uses it (eval/features.py): index, then decode in the loader's workers."""
    from torch.utils.data import DataLoader

    from reclip_eval.data.image_dataset import ImageListDataset, collate_skipping
    from reclip_eval.data.wds_eval import load_tar_member, read_wds_set
    from reclip_eval.distributed import worker_context

    wds = read_wds_set(root, "test", ("classification",))
    dataset = ImageListDataset(list(zip(wds.images, wds.labels, strict=True)), transform, load=load_tar_member)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_skipping,
                        multiprocessing_context=worker_context() if workers else None)
    for pixels, labels, _, skipped in loader:
        assert not skipped, skipped
        yield pixels, labels


def read_theirs(root: Path, transform, batch_size: int, workers: int):
    """CLIP_benchmark's reader as its evaluation uses it (cli.py: build_dataset, then a DataLoader)."""
    from clip_benchmark.datasets.builder import build_wds_dataset
    from torch.utils.data import DataLoader

    dataset = build_wds_dataset("wds_bench", transform, split="test", data_dir=str(root))
    for pixels, labels in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        yield pixels, labels.tolist()


READERS = {"reclip-eval": read_ours, "clip_benchmark": read_theirs}


def image_fingerprints(batches) -> list[tuple[int, float]]:
    """(label, pixel sum) of every image, sorted: equal lists mean the same images with the same pixels."""
    return sorted((label, round(float(p.double().sum()), 3)) for pixels, labels in batches
                  for p, label in zip(pixels, labels, strict=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--photo-size", default="500x375", help="WIDTHxHEIGHT of the JPEGs written into the shards")
    p.add_argument("--shard-size", type=int, default=500, help="images per shard (the exporter's max_count)")
    p.add_argument("--image-sizes", default="224,64", help="transform output sizes, comma-separated")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="timed passes per reader and size (alternating)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)

    import torch

    from reclip_eval.data.transforms import image_transform
    from reclip_eval.eval.results import software_versions
    from reclip_eval.models.config import PreprocessConfig

    torch.set_num_threads(1)  # the loaders' workers do the work; the main process only collects batches
    width, height = (int(side) for side in args.photo_size.lower().split("x"))
    sizes = [int(s) for s in args.image_sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="reclip-wds-bench-"))
    samples = write_photos(work / "photos", args.images, width, height)
    root = export_shards(samples, work / "wds", args.shard_size)
    shard_bytes = sum(f.stat().st_size for f in (root / "test").glob("*.tar"))

    from reclip_eval.data.wds_eval import read_wds_set

    load_before = os.getloadavg()
    start = time.perf_counter()
    read_wds_set(root, "test", ("classification",))
    index_s = time.perf_counter() - start
    seconds: dict[str, dict[str, list[float]]] = {str(s): {name: [] for name in READERS} for s in sizes}
    same_pixels, failed = {}, {}
    for size in sizes:
        transform = image_transform(size, PreprocessConfig())
        # Warm-up (page cache, imports, worker start-up paths) and the check that both read the same images.
        fingerprints = {}
        for name, read in READERS.items():
            try:
                fingerprints[name] = image_fingerprints(read(root, transform, args.batch_size, args.workers))
            except ValueError as e:  # webdataset with fewer shards than workers: "No samples found in dataset"
                # the worker's error, not its traceback
                failed[name] = " ".join(str(e).rpartition("ValueError: ")[2].split())[:300]
        assert len(fingerprints["reclip-eval"]) == args.images
        same_pixels[str(size)] = fingerprints["reclip-eval"] == fingerprints.get("clip_benchmark")
        for _ in range(args.repeats):
            for name, read in READERS.items():
                if name in failed:
                    continue
                start = time.perf_counter()
                count = sum(len(labels) for _, labels in read(root, transform, args.batch_size, args.workers))
                seconds[str(size)][name].append(round(time.perf_counter() - start, 3))
                assert count == args.images, (name, count)

    results = {}
    for size, timings in seconds.items():
        if failed:
            results[size] = {"seconds": timings, "failed": failed}
            continue
        rate = {name: {"min_s": min(t), "median_s": statistics.median(t),
                       "images_per_second_best": round(args.images / min(t), 1),
                       "images_per_second_median": round(args.images / statistics.median(t), 1)}
                for name, t in timings.items()}
        results[size] = {**rate, "ours_over_theirs_best": round(rate["reclip-eval"]["images_per_second_best"]
                                                                / rate["clip_benchmark"]["images_per_second_best"], 3),
                         "ours_over_theirs_median": round(rate["reclip-eval"]["images_per_second_median"]
                                                          / rate["clip_benchmark"]["images_per_second_median"], 3),
                         "same_images_and_pixels": same_pixels[size], "seconds": timings}
    report = {
        "benchmark": "CLIP_benchmark wds eval set: read, decode and transform every image (no model)",
        "command": " ".join(["python", *sys.argv]),
        "images": args.images, "photo_size": [width, height], "shards": len(list((root / "test").glob("*.tar"))),
        "mean_jpeg_bytes": round(shard_bytes / args.images), "batch_size": args.batch_size, "workers": args.workers,
        "repeats": args.repeats, "reclip-eval_index_s": round(index_s, 3), "results": results,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "note": "a shared, loaded machine (see load averages): indicative only",
        "machine": {"processor": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "software": {**{k: v for k, v in software_versions().items()
                        if k in ("torch", "torchvision", "pillow", "reclip-eval", "reclip-eval_git")},
                     **{name: metadata.version(name) for name in ("webdataset", "clip_benchmark")}},
    }
    return emit_report(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
