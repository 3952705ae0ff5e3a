"""Rewrite webdataset shards with smaller images, so a low-resolution training stage decodes small JPEGs.

At 64 px the data loader, not the accelerator, is the bottleneck: decoding a 500 px web JPEG to show the model
64 px wastes most of the loader's time. `reclip-eval data preresize` resizes every image so its shorter side is
`short_side` (never upscaling), re-encodes it as JPEG and copies every other member (captions, json) unchanged.
Each output shard is written atomically; shards are processed in parallel.
"""

from __future__ import annotations

import io
import json
import multiprocessing
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from reclip_eval.atomic import atomic_path

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")


@dataclass(frozen=True)
class PreresizeConfig:
    short_side: int = 96
    quality: int = 90


def resize_image_bytes(data: bytes, config: PreresizeConfig) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        width, height = image.size
        scale = config.short_side / min(width, height)
        if scale < 1:
            image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                 Image.Resampling.BICUBIC, reducing_gap=3.0)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=config.quality)
        return out.getvalue()


def _preresize_shard(args: tuple[str, str, PreresizeConfig]) -> tuple[int, int]:
    import webdataset as wds

    source, target, config = args
    count = failed = 0
    with atomic_path(Path(target)) as tmp, wds.TarWriter(str(tmp)) as sink:
        for sample in wds.WebDataset(source, shardshuffle=False, handler=wds.warn_and_continue):
            out = {"__key__": sample["__key__"]}
            for key, value in sample.items():
                if key.startswith("__"):
                    continue
                if key in IMAGE_KEYS:
                    try:
                        out["jpg"] = resize_image_bytes(value, config)
                    except OSError:
                        failed += 1
                        out = None
                        break
                else:
                    out[key] = value
            if out is not None:
                sink.write(out)
                count += 1
    return count, failed


def preresize_shards(shards: list[str], out_dir: str | Path, config: PreresizeConfig, workers: int = 1) -> dict:
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(s, str(out_dir / Path(s).name), config) for s in shards]
    written = skipped = 0
    with tqdm(total=len(jobs), desc="preresize", unit="shard") as bar:
        if workers <= 1:
            results = map(_preresize_shard, jobs)
        else:
            pool = multiprocessing.get_context("spawn").Pool(workers)
            results = pool.imap(_preresize_shard, jobs)
        for count, failed in results:
            written += count
            skipped += failed
            bar.update(1)
        if workers > 1:
            pool.close()
            pool.join()
    summary = {"shards": len(jobs), "samples": written, "skipped_unreadable_images": skipped, **asdict(config)}
    (out_dir / "preresize.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
