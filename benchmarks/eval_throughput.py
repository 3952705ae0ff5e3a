"""Zero-shot evaluation throughput: reclip-eval vs CLIP_benchmark, same model, data, batch and precision, one run.

Not a test: run it on the machine whose numbers you report, e.g. on one H100:

    python benchmarks/eval_throughput.py --preset vit-l16-text12x1024 --image-size 224 --images 10000 \\
        --batch-size 256 --workers 8 --device cuda --precision bf16 --out benchmarks/results/eval_throughput_h100.json

The model is the paper's ViT-L/16 + 12x1024 text tower, randomly initialised (speed does not depend on the
weights); the images are the synthetic zero-shot set, generated first. Both sides build the prompt-ensembled
classifier and classify every image; wall time covers both, the ratio is ours / theirs in images/s.
A CPU smoke run: --preset tiny --image-size 32 --images 144 --batch-size 32 --workers 0 --device cpu --precision fp32
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import emit_report


def _clip_benchmark_eval(model, dataset, tokenizer, classnames, templates, batch_size, workers, device, amp):
    from clip_benchmark.metrics import zeroshot_classification as zc
    from torch.utils.data import DataLoader

    # CLIP_benchmark 1.6.2's accuracy() fails on numpy >= 2.4 (float() of a 1-element array): same maths, .item().
    def accuracy(output, target, topk=(1,)):
        pred = output.topk(max(topk), 1, True, True)[1].t()
        correct = pred.eq(target.view(1, -1).expand_as(pred))
        return [correct[:k].reshape(-1).float().sum(0).item() / len(target) for k in topk]

    zc.accuracy = accuracy
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=device == "cuda")
    return zc.evaluate(model, loader, tokenizer, classnames, [t.replace("{}", "{c}") for t in templates],
                       device=device, amp=amp)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="vit-l16-text12x1024")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per side (after one warm-up)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)

    from torchvision.datasets import ImageFolder

    from reclip_eval.classifier.templates import read_templates
    from reclip_eval.data.imagefolder import read_class_list
    from reclip_eval.data.synth.export import SynthConfig, synthesize
    from reclip_eval.eval.results import device_name, software_versions
    from reclip_eval.eval.runner import EvalOptions, evaluate
    from reclip_eval.eval.tasks import load_task
    from reclip_eval.models import CLIP
    from reclip_eval.models.presets import build_config, with_image_size
    from reclip_eval.zoo.reclip import ReclipAdapter

    task = load_task("shapes-zeroshot")
    classes = read_class_list(task.resource(task.classes))
    templates = read_templates(task.resource(task.templates))
    data = Path(tempfile.mkdtemp(prefix="reclip-bench-"))
    per_class = max(1, args.images // len(classes.ids))
    synthesize(data, SynthConfig(seed=11, image_size=max(128, args.image_size), zeroshot_per_class=per_class),
               sets=["zeroshot"], workers=max(1, args.workers))
    n_images = per_class * len(classes.ids)

    torch.manual_seed(0)
    config = with_image_size(build_config(args.preset), args.image_size)
    model = CLIP(config).to(args.device).eval()
    adapter = ReclipAdapter(model, f"{args.preset}@{args.image_size}", sha256=None)
    options = EvalOptions(data_dir=data, batch_size=args.batch_size, workers=args.workers, device=args.device,
                          precision=args.precision)
    dataset = ImageFolder(str(data / "shapes-zeroshot" / "val"), transform=adapter.transform)
    name_of = dict(zip(classes.ids, classes.names, strict=True))
    classnames = [name_of[c] for c in dataset.classes]

    def ours():
        return evaluate(adapter, task, options, argv=[])["metrics"]["top1"]

    def theirs():
        with torch.no_grad():
            return _clip_benchmark_eval(model, dataset, adapter.tokenize, classnames, templates, args.batch_size,
                                        args.workers, args.device, amp=args.precision == "bf16")["acc1"]

    timings: dict[str, list[float]] = {"reclip-eval": [], "clip_benchmark": []}
    top1 = {}
    for name, run in (("reclip-eval", ours), ("clip_benchmark", theirs)):
        top1[name] = run()  # warm-up (cuDNN autotuning, worker start-up, page cache)
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            run()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            timings[name].append(time.perf_counter() - start)
    rate = {name: n_images / min(t) for name, t in timings.items()}
    report = {
        "benchmark": "zero-shot classification throughput (classifier build + all images)",
        "command": " ".join([sys.executable, *sys.argv]),
        "device": device_name(args.device),
        "preset": args.preset, "image_size": args.image_size, "images": n_images, "batch_size": args.batch_size,
        "workers": args.workers, "precision": args.precision, "repeats": args.repeats,
        "seconds": timings, "images_per_second": rate, "ratio_ours_over_clip_benchmark": rate["reclip-eval"] /
        rate["clip_benchmark"], "top1_agree": abs(top1["reclip-eval"] - top1["clip_benchmark"]) < 1e-6
        if args.precision == "fp32" else None, "software": software_versions(),
    }
    return emit_report(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
