"""Training-step throughput: reclip-eval vs OpenCLIP, same architecture, batch, dtype and optimizer, one run.

Not a test. On one H100 (the issue's reference run: OpenCLIP 3.3, bf16, fused AdamW, batch 256):

    python benchmarks/train_throughput.py --sizes 224,112,80,64 --batch-size 256 --device cuda --compile \\
        --out benchmarks/results/train_throughput_h100.json

Both models are the paper's ViT-L/16 image tower + 12-layer width-1024 text tower, randomly initialised, on
random inputs (text length 64 at 224/112 px, 16 at 80/64 px, as in the recipes). Reported per image size:
samples/s, achieved TFLOP/s (3 x forward FLOPs per sample, counted by torch's FLOP counter on each model) and the
ratio ours / OpenCLIP. A CPU smoke run: --arch tiny --sizes 32,16 --batch-size 8 --steps 2 --device cpu --dtype fp32

With --shards, our step is also timed fed by the trainer's own loader (webdataset shards -> decode -> resize to
the stage size -> tokenize, --workers processes, pinned memory), and the report gives that rate over the
random-input one. For the low-resolution stages, pre-resize first (synthetic shards here; your own shards alike):

    reclip-eval data synth --out /tmp/shards --sets train --image-size 448 --train-samples 20000 --workers 16
    reclip-eval data preresize /tmp/shards/shapes-train --out /tmp/shards/small --short-side 96 --workers 16
    python benchmarks/train_throughput.py --sizes 64 --compile --shards /tmp/shards/small --workers 16 \\
        --out benchmarks/results/train_throughput_shards_h100.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from _common import emit_report

TEXT_LENGTH = {224: 64, 112: 64, 80: 16, 64: 16}
ARCHS = {
    # name: (our preset, open_clip config with the same sizes)
    "vit-l16-text12x1024": ("vit-l16-text12x1024", {
        "embed_dim": 1024, "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 16},
        "text_cfg": {"context_length": 64, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 12}}),
    "tiny": ("tiny", {
        "embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}),
}


def _openclip_model(config: dict, image_size: int, text_length: int, device: str):
    import tempfile

    import open_clip

    cfg = json.loads(json.dumps(config))
    cfg["vision_cfg"]["image_size"] = image_size
    cfg["text_cfg"]["context_length"] = max(text_length, cfg["text_cfg"]["context_length"])
    name = f"bench-{image_size}-{text_length}"
    path = Path(tempfile.mkdtemp()) / f"{name}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(str(path))
    return open_clip.create_model(name, pretrained=None).to(device), open_clip.ClipLoss()


def _step_fn(kind: str, model, loss_fn, optimizer, dtype):
    def step(pixels, tokens):
        with torch.autocast(pixels.device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            if kind == "ours":
                image, text, scale = model(pixels, tokens)
                loss = loss_fn(image.float(), text.float(), scale.float())
            else:
                image, text, scale = model(pixels, tokens)[:3]  # open_clip returns a tuple by default
                loss = loss_fn(image.float(), text.float(), scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def _forward_flops(model, kind: str, pixels, tokens) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.encode_image(pixels[:1])
        model.encode_text(tokens[:1])
    return counter.get_total_flops()


def _shard_batches(config, image_size: int, text_length: int, args):
    """The trainer's stream (train/loop.py) over --shards, moved to the device as the trainer does."""
    from reclip_eval.data.shards import list_shards, train_batches
    from reclip_eval.data.transforms import image_transform
    from reclip_eval.models.tokenizer import ClipTokenizer

    stream = train_batches(list_shards(args.shards, None), image_transform(image_size, config.preprocess),
                           ClipTokenizer(text_length), batch_size=args.batch_size, seed=0, shuffle_buffer=1000,
                           workers=args.workers, pin_memory=args.device.startswith("cuda"))
    for pixels, tokens in stream:
        yield pixels.to(args.device, non_blocking=True), tokens.to(args.device, non_blocking=True)


def benchmark(kind: str, arch: str, image_size: int, args) -> dict:
    """kind: "ours" or "open_clip" on random inputs, or "ours_shards" fed from --shards."""
    from reclip_eval.models import CLIP
    from reclip_eval.models.presets import build_config, with_image_size
    from reclip_eval.train.loss import contrastive_loss

    preset, oc_config = ARCHS[arch]
    text_length = TEXT_LENGTH.get(image_size, 16)
    torch.manual_seed(0)
    if kind.startswith("ours"):
        config = with_image_size(build_config(preset, {"text": {"context_length": max(64, text_length)}}), image_size)
        model, loss_fn = CLIP(config).to(args.device), contrastive_loss
    else:
        model, loss_fn = _openclip_model(oc_config, image_size, text_length, args.device)
    fused = args.device.startswith("cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)
    pixels = torch.randn(args.batch_size, 3, image_size, image_size, device=args.device)
    tokens = torch.randint(1, 49407, (args.batch_size, text_length), device=args.device)
    tokens[:, -1] = 49407
    flops = _forward_flops(model, kind, pixels, tokens)
    step = _step_fn(kind.removesuffix("_shards"), torch.compile(model) if args.compile else model, loss_fn, optimizer,
                    args.dtype)
    batches = _shard_batches(config, image_size, text_length, args) if kind == "ours_shards" else None
    for _ in range(args.warmup + max(1, args.workers) if batches else args.warmup):  # + loader start-up
        step(*(next(batches) if batches else (pixels, tokens)))
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step(*(next(batches) if batches else (pixels, tokens)))
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    rate = args.batch_size * args.steps / seconds
    return {"samples_per_second": rate, "forward_gflops_per_sample": flops / 1e9,
            "achieved_tflops": 3 * flops * rate / 1e12, "text_length": text_length}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=sorted(ARCHS), default="vit-l16-text12x1024")
    p.add_argument("--sizes", default="224,112,80,64")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--shards", help="also time our step fed from these webdataset shards (folder, glob or braces)")
    p.add_argument("--workers", type=int, default=8, help="loader processes for --shards")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)

    from reclip_eval.eval.results import device_name, software_versions

    rows = {}
    for size in (int(s) for s in args.sizes.split(",")):
        ours, theirs = benchmark("ours", args.arch, size, args), benchmark("open_clip", args.arch, size, args)
        rows[size] = {"reclip-eval": ours, "open_clip": theirs,
                      "ratio": ours["samples_per_second"] / theirs["samples_per_second"]}
        if args.shards:
            fed = benchmark("ours_shards", args.arch, size, args)
            rows[size].update({"reclip-eval_shards": fed,
                               "shards_over_random": fed["samples_per_second"] / ours["samples_per_second"]})
    report = {"benchmark": "training step throughput (forward, backward, AdamW step), random inputs",
              "command": " ".join([sys.executable, *sys.argv]), "device": device_name(args.device),
              "arch": args.arch, "batch_size": args.batch_size, "dtype": args.dtype, "compile": args.compile,
              "steps": args.steps, "shards": args.shards, "loader_workers": args.workers if args.shards else None,
              "cpu_cores": os.cpu_count(), "results": rows, "software": software_versions()}
    return emit_report(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
