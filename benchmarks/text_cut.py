"""Building a zero-shot classifier with text batches cut at their last decisive position (the default) vs run at
the full context length, on the CPU: ImageNet's 1000 class names x its first few templates.

    python benchmarks/text_cut.py --model reclip-demo --templates 4 --runs 3 --out benchmarks/results/text_cut_cpu.json
    python benchmarks/text_cut.py --model openclip:ViT-B-32 --random-init --templates 1 --runs 1 \
        --out benchmarks/results/text_cut_vit_b32_cpu.json     # a 77-token context, as ImageNet's classifiers have

Each run builds the classifier as zero-shot evaluation does (eval/zeroshot.build_classifier, no cache), the two
settings alternating. Reported: the median seconds of each, the speedup, the largest difference between the two
classifiers, the text lengths, and the machine's load average before and after (a shared machine's timings are
indicative only).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from _common import emit_report

SETTINGS = (False, True)  # cut_text_padding: off (every batch at the context length), then on


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="reclip-demo", help="any --model spec")
    p.add_argument("--random-init", action="store_true", help="an openclip:ARCH without weights (timing only)")
    p.add_argument("--templates", type=int, default=4, help="ImageNet's first N templates")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--runs", type=int, default=3, help="timed builds per setting (the median is reported)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    for name in ("templates", "batch_size", "runs", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    import torch

    from reclip_eval.api import load
    from reclip_eval.classifier.templates import read_templates
    from reclip_eval.data.imagefolder import read_class_list
    from reclip_eval.eval.tasks import load_task
    from reclip_eval.eval.zeroshot import build_classifier

    torch.set_num_threads(args.threads)
    spec = load_task("imagenet")
    names = list(read_class_list(spec.resource(spec.classes)).names)
    templates = read_templates(spec.resource(spec.templates))[:args.templates]
    adapter = load(args.model, device="cpu", precision="fp32", random_init=args.random_init)
    texts = [t.format(n) for n in names for t in templates]
    tokens = adapter.tokenize(texts)
    load_before = os.getloadavg()
    seconds: dict[bool, list[float]] = {setting: [] for setting in SETTINGS}
    classifiers = {}
    for _ in range(args.runs):
        for setting in SETTINGS:
            adapter.cut_text_padding = setting
            start = time.perf_counter()
            classifiers[setting] = build_classifier(adapter, names, templates, batch_size=args.batch_size)
            seconds[setting].append(time.perf_counter() - start)
    uncut, cut = (statistics.median(seconds[s]) for s in SETTINGS)
    batches = [tokens[i:i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": args.model,
        "prompts": len(texts),
        "classes": len(names),
        "templates": len(templates),
        "batch_size": args.batch_size,
        "context_length": int(tokens.shape[1]),
        "mean_cut_length": statistics.mean(adapter.decisive_text_length(b) or tokens.shape[1] for b in batches),
        "uncut_s": round(uncut, 3),
        "cut_s": round(cut, 3),
        "speedup": round(uncut / cut, 2),
        "max_abs_difference": float((classifiers[True] - classifiers[False]).abs().max()),
        "runs": {"uncut": [round(s, 3) for s in seconds[False]], "cut": [round(s, 3) for s in seconds[True]]},
        "torch_threads": args.threads,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "note": "a shared, loaded machine (see load averages): indicative only",
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__},
    }
    return emit_report(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
