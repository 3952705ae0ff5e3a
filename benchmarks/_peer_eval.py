"""CLIP_benchmark's side of benchmarks/eval_throughput.py --realistic, run as a whole process the way a peer user
runs it: build the model, wrap the class folders in torchvision's ImageFolder, call clip_benchmark's zero-shot
`evaluate` (classifier built from the prompts, then every image). Prints one JSON line: top-1 and image count.

    python benchmarks/_peer_eval.py TASK.yaml DATA_DIR --openclip ViT-B-16 --image-size 64 --batch-size 128 --workers 2
    python benchmarks/_peer_eval.py tasks/shapes-zeroshot.yaml DATA_DIR --reclip reclip-demo ...

`--openclip ARCH`: open_clip's own random-init model and preprocessing (no reclip_eval import at all).
`--reclip NAME`: one of our bundled models (the only way to get its weights into a torch module), its transform.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _read_task(path: Path) -> tuple[Path, list[str], list[str], list[str]]:
    """(images folder relative to the data dir, class ids, class names, templates) from a task YAML."""
    import yaml

    spec = yaml.safe_load(path.read_text())
    rows = [line.rstrip("\n").split("\t") for line in (path.parent / spec["classes"]).read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    templates = [t for t in (path.parent / spec["templates"]).read_text().splitlines() if t.strip()]
    split = spec["data"]["layouts"][0]["split"]
    return Path(spec["data"]["folder"]) / split, [r[0] for r in rows], [r[1] for r in rows], templates


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("task", type=Path)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--openclip")
    p.add_argument("--reclip")
    p.add_argument("--image-size", type=int)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()

    import torch
    from clip_benchmark.metrics import zeroshot_classification as zc
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    folder, ids, names, templates = _read_task(args.task)
    if args.openclip:
        import open_clip

        model, _, transform = open_clip.create_model_and_transforms(args.openclip, pretrained=None,
                                                                    force_image_size=args.image_size)
        tokenizer = open_clip.get_tokenizer(args.openclip)
    else:
        from reclip_eval.api import load

        adapter = load(args.reclip, image_size=args.image_size, device="cpu", precision="fp32")
        model, transform, tokenizer = adapter.model, adapter.transform, adapter.tokenize
    model.eval()

    # CLIP_benchmark 1.6.2's accuracy() fails on numpy >= 2.4 (float() of a 1-element array): same maths, .item().
    def accuracy(output, target, topk=(1,)):
        pred = output.topk(max(topk), 1, True, True)[1].t()
        correct = pred.eq(target.view(1, -1).expand_as(pred))
        return [correct[:k].reshape(-1).float().sum(0).item() / len(target) for k in topk]

    zc.accuracy = accuracy
    dataset = ImageFolder(str(args.data_dir / folder), transform=transform)
    name_of = dict(zip(ids, names, strict=True))
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    with torch.no_grad():
        metrics = zc.evaluate(model, loader, tokenizer, [name_of[c] for c in dataset.classes],
                              [t.replace("{}", "{c}") for t in templates], device="cpu", amp=False)
    print(json.dumps({"top1": metrics["acc1"], "images": len(dataset)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
