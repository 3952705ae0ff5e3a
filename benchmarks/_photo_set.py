"""A folder of photo-sized JPEGs in ImageNet's layout, and a task YAML over it, for benchmarks/eval_throughput.py.

Synthetic but photo-like where it matters for timing: 500 x 375 (ImageNet's most common size), ~95 KB each at JPEG
quality 90 (a natural photo's size), made of a smooth colour field, a few soft-edged blobs and 1/f ("pink") noise
texture, so decoding costs what a photo's does (a flat or white-noise image compresses far better or far worse).
The labels are arbitrary: with random weights only the time is measured, and both sides see the same images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 500, 375
QUALITY = 90


def _pink_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) zero-mean noise with a 1/f amplitude spectrum, unit standard deviation."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(height, width))
    channels = []
    for _ in range(3):
        phase = rng.uniform(0, 2 * np.pi, amplitude.shape)
        noise = np.fft.irfft2(amplitude * np.exp(1j * phase), s=(height, width))
        channels.append((noise - noise.mean()) / noise.std())
    return np.stack(channels, axis=-1)


def photo_like(rng: np.random.Generator) -> Image.Image:
    small = rng.uniform(0, 255, (4, 5, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(small).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC), dtype=np.float64)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    for _ in range(rng.integers(2, 6)):  # soft-edged objects
        cy, cx, radius = rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH), rng.uniform(30, 140)
        mask = 1 / (1 + np.exp((np.hypot(yy - cy, xx - cx) - radius) / 4))
        field = field * (1 - mask[..., None]) + mask[..., None] * rng.uniform(0, 255, 3)
    pixels = field + 32 * _pink_noise(rng, HEIGHT, WIDTH)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_photo_task(root: Path, class_names: list[str], templates: list[str], per_class: int,
                     seed: int = 0) -> Path:
    """root/photos/val/cNNNN/*.jpg, root/classes.tsv, root/templates.txt and root/photos.yaml (returned)."""
    rng = np.random.default_rng(seed)
    ids = [f"c{i:04d}" for i in range(len(class_names))]
    for class_id in ids:
        folder = root / "photos" / "val" / class_id
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            photo_like(rng).save(folder / f"{class_id}_{i:05d}.jpg", quality=QUALITY)
    (root / "classes.tsv").write_text("".join(f"{c}\t{n}\n" for c, n in zip(ids, class_names, strict=True)))
    (root / "templates.txt").write_text("".join(f"{t}\n" for t in templates))
    task = root / "photos.yaml"
    task.write_text("name: photos\nkind: zeroshot_classification\n"
                    "description: photo-sized synthetic JPEGs (benchmarks/eval_throughput.py)\n"
                    "data:\n  folder: photos\n  layouts:\n    - {kind: class_folders, split: val}\n"
                    "classes: classes.tsv\ntemplates: templates.txt\nget_data: written by benchmarks/eval_throughput.py\n")
    return task


def mean_file_kb(root: Path) -> float:
    sizes = [p.stat().st_size for p in (root / "photos" / "val").rglob("*.jpg")]
    return round(sum(sizes) / len(sizes) / 1000, 1)
