"""Detector memory and speed: training and inference images/s and peak memory of the open-vocabulary Mask R-CNN
(reclip_eval/detect/) at a given canvas size, for ViT-B/16 and ViT-L/16 CLIP backbones.

Not a test. On one GPU (issue #7's figure; 1024 px as in detect-lvis-vitl16.yaml, 1203 LVIS categories):

    python benchmarks/detect_throughput.py --archs vit-b16,vit-l16 --image-size 1024 --batch-size 4 \\
        --device cuda --precision bf16 --out benchmarks/results/detect_throughput_h100.json

Random weights (speed and memory do not depend on them), random images and, for training, 20 random boxes with
masks per image. Peak memory is torch.cuda.max_memory_allocated (GPU) or the process's peak RSS growth (CPU).
A CPU smoke run: --archs tiny --image-size 64 --batch-size 2 --steps 1 --warmup 1 --categories 10 --device cpu
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
from _common import emit_report

# Image towers as overrides of the paper's preset (text tower irrelevant here: only its embedding width is used).
ARCHS = {
    "vit-l16": ("vit-l16-text12x1024", {}),
    "vit-b16": ("vit-l16-text12x1024", {"embed_dim": 512, "vision": {"width": 768, "layers": 12, "heads": 12}}),
    "tiny": ("tiny", {}),
}


def _detector(arch: str, recipe: str, image_size: int, categories: int, device: str):
    from reclip_eval.detect.config import load_detect_recipe
    from reclip_eval.detect.model import OpenVocabDetector
    from reclip_eval.models.clip import CLIP
    from reclip_eval.models.presets import build_config

    preset, overrides = ARCHS[arch]
    clip = CLIP(build_config(preset, overrides))
    depth = clip.config.vision.layers
    config = load_detect_recipe(recipe, [f"detector.backbone.image_size={image_size}",
                                         f"detector.backbone.global_blocks=[{','.join(map(str, _global(depth)))}]"]
                                ).detector
    detector = OpenVocabDetector(clip, config).to(device)
    embeddings = torch.nn.functional.normalize(torch.randn(categories, clip.config.embed_dim), dim=-1)
    detector.set_vocabulary(embeddings)
    return detector


def _global(depth: int) -> list[int]:
    from reclip_eval.detect.backbone import default_global_blocks

    return default_global_blocks(depth)


def _batch(batch_size: int, image_size: int, categories: int, device: str, generator: torch.Generator):
    images, targets = [], []
    for _ in range(batch_size):
        images.append(torch.rand(3, image_size, image_size, generator=generator).to(device))
        xy = torch.rand(20, 2, generator=generator) * image_size * 0.7
        wh = 8 + torch.rand(20, 2, generator=generator) * image_size * 0.3
        boxes = torch.cat([xy, (xy + wh).clamp(max=image_size - 1)], dim=1)
        masks = torch.zeros(20, image_size, image_size, dtype=torch.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
            masks[i, y0:y1, x0:x1] = 1
        targets.append({"boxes": boxes.to(device), "labels": torch.randint(1, categories + 1, (20,), generator=generator)
                        .to(device), "masks": masks.to(device)})
    return images, targets


def _peak_reset(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def _peak_gib(device: str, start: float) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20 - start  # growth only; a lower bound


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(arch: str, args: argparse.Namespace) -> dict:
    device = args.device
    from reclip_eval.device import autocast

    generator = torch.Generator().manual_seed(0)
    detector = _detector(arch, args.recipe, args.image_size, args.categories, device)
    params = [p for p in detector.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=device.startswith("cuda"))
    images, targets = _batch(args.batch_size, args.image_size, args.categories, device, generator)

    detector.train()
    start = _peak_reset(device)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            _sync(device)
            began = time.perf_counter()
        with autocast(device, args.precision):
            loss = sum(detector(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    train_ips = args.steps * args.batch_size / (time.perf_counter() - began)
    train_peak = _peak_gib(device, start)

    detector.eval()
    start = _peak_reset(device)
    with torch.no_grad():
        for step in range(args.warmup + args.steps):
            if step == args.warmup:
                _sync(device)
                began = time.perf_counter()
            with autocast(device, args.precision):
                detector(images)
    _sync(device)
    infer_ips = args.steps * args.batch_size / (time.perf_counter() - began)
    return {"train_images_per_second": round(train_ips, 3), "train_peak_memory_gib": round(train_peak, 3),
            "inference_images_per_second": round(infer_ips, 3), "inference_peak_memory_gib":
            round(_peak_gib(device, start), 3),
            "trainable_parameters": sum(p.numel() for p in params)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="vit-b16,vit-l16")
    p.add_argument("--recipe", default="detect-lvis-vitl16", help="detector recipe for heads and settings")
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--categories", type=int, default=1203)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.precision == "bf16" and not args.device.startswith("cuda"):
        print("bf16 autocast is measured on a GPU only; use --precision fp32 on CPU", file=sys.stderr)
        return 2
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    report = {"benchmark": "detect_throughput", "device": device_name, "image_size": args.image_size,
              "batch_size": args.batch_size, "precision": args.precision, "categories": args.categories,
              "steps": args.steps, "command": " ".join(["python", "benchmarks/detect_throughput.py", *sys.argv[1:]]),
              "results": {arch: measure(arch, args) for arch in args.archs.split(",")}}
    return emit_report(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
