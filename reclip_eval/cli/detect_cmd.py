"""reclip-eval detect {train,predict,evaluate}: the open-vocabulary detector and the standalone LVIS evaluator."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  reclip-eval detect train --recipe detect-shapes --backbone reclip-demo --out runs/detect-shapes
  reclip-eval detect train --recipe detect-shapes --backbone reclip-demo --out runs/detect-random --random-init
  reclip-eval detect train --recipe detect-shapes --backbone reclip-demo --out runs/quick schedule.steps=20
  reclip-eval --model runs/detect-shapes --task shapes-lvis                # predict + evaluate, results JSON
  reclip-eval detect predict --model runs/detect-shapes --annotations DATA/shapes-lvis/lvis_v1_val.json \\
      --out dets.json --evaluate
  reclip-eval detect evaluate --annotations lvis_v1_val.json --detections dets.json
  reclip-eval detect evaluate --annotations lvis_v1_val.json --detections dets.json --iou-type segm --json ap.json
  reclip-eval detect evaluate --annotations lvis_v1_val.json --detections dets.json --fixed-ap
"""


def add_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reclip-eval detect", description="Open-vocabulary detection.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)
    t = sub.add_parser("train", help="train the detector on an LVIS-format set's base categories")
    t.add_argument("--recipe", required=True, help="detector recipe name (training/detect-*.yaml) or YAML path")
    t.add_argument("--backbone", required=True, help="CLIP model: named model, checkpoint dir or hf-hub:org/name")
    t.add_argument("--out", type=Path, required=True, help="detector checkpoint directory to write")
    t.add_argument("--random-init", action="store_true",
                   help="same architecture, random weights (the baseline without language pretraining)")
    t.add_argument("--data-dir", type=Path, help="data root holding the recipe's data folder (default: $RECLIP_DATA)")
    t.add_argument("--device", default="auto")
    t.add_argument("--workers", type=int, help="data loader workers (default: the recipe's)")
    t.add_argument("overrides", nargs="*", help="key=value overrides after the options, e.g. schedule.steps=20")
    r = sub.add_parser("predict", help="run a detector over an LVIS annotation file's images -> results JSON")
    r.add_argument("--model", type=Path, required=True, help="detector checkpoint directory")
    r.add_argument("--annotations", type=Path, required=True, help="LVIS v1 JSON (its categories are the vocabulary)")
    r.add_argument("--images", type=Path, help="folder holding train2017/ and val2017/ (default: the JSON's folder)")
    r.add_argument("--out", type=Path, required=True, help="detections file (LVIS results format) to write")
    r.add_argument("--evaluate", action="store_true", help="also print mask and box AP")
    r.add_argument("--batch-size", type=int, default=4)
    r.add_argument("--device", default="auto")
    r.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    e = sub.add_parser("evaluate", help="LVIS AP (AP, AP50, AP75, APs/m/l, APr/c/f) of a detections file")
    e.add_argument("--annotations", type=Path, required=True, help="LVIS v1 annotation JSON (e.g. lvis_v1_val.json)")
    e.add_argument("--detections", type=Path, required=True,
                   help="results JSON: [{image_id, category_id, score, bbox, segmentation (RLE, for segm)}]")
    e.add_argument("--iou-type", choices=["bbox", "segm"], action="append",
                   help="bbox and/or segm (default: bbox, plus segm when the detections carry masks)")
    e.add_argument("--fixed-ap", action="store_true",
                   help="Fixed AP (Dave et al. 2021): no per-image cap, at most 10,000 detections per category")
    e.add_argument("--allow-missing-federated-fields", action="store_true",
                   help="evaluate an annotation file whose images lack neg_category_ids / not_exhaustive_category_ids "
                        "(read as empty: false positives on unannotated categories are not counted; recorded in "
                        "the metrics JSON)")
    e.add_argument("--json", type=Path, help="write the metrics here (atomically)")
    return p


def _table(results: dict[str, dict[str, float]]) -> str:
    from tabulate import tabulate

    names = list(next(iter(results.values())))
    return tabulate([[t, *(f"{100 * m[n]:.2f}" if m[n] >= 0 else "-" for n in names)] for t, m in results.items()],
                    headers=["iou", *names], tablefmt="github", disable_numparse=True)


def _train(args: argparse.Namespace) -> int:
    from reclip_eval.detect.config import load_detect_recipe
    from reclip_eval.detect.train import train_detector

    recipe = load_detect_recipe(args.recipe, args.overrides)
    loaded, report = train_detector(recipe, args.backbone, args.out, data_dir=args.data_dir, device=args.device,
                                    random_init=args.random_init, workers=args.workers)
    first, last = (report.losses[0], report.losses[-1]) if report.losses else (float("nan"),) * 2
    print(f"{report.steps} steps on {len(loaded.base_vocabulary)} base categories, loss {first:.3f} -> {last:.3f}, "
          f"{report.wall_time_s:.0f}s\ndetector: {args.out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from reclip_eval.atomic import write_json_atomic
    from reclip_eval.detect.checkpoint import load_detector
    from reclip_eval.detect.data import read_lvis
    from reclip_eval.detect.predict import predict_lvis
    from reclip_eval.device import resolve_device, resolve_precision
    from reclip_eval.metrics.lvis import evaluate_lvis
    from reclip_eval.metrics.lvis_inputs import check_annotations

    device = resolve_device(args.device)
    lvis = read_lvis(args.annotations, args.images or args.annotations.parent)
    if args.evaluate:  # before predicting: a file that cannot be evaluated fails in seconds, not after the model ran
        check_annotations(lvis.raw, str(lvis.path))
    predictions = predict_lvis(load_detector(args.model), lvis, batch_size=args.batch_size, device=device,
                               precision=resolve_precision(args.precision, device))
    write_json_atomic(args.out, predictions.detections)
    print(f"{len(predictions.detections)} detections on {predictions.images_evaluated}/{predictions.images_total} "
          f"images ({predictions.novel_categories} novel categories) -> {args.out}")
    if args.evaluate:
        print(_table({t: evaluate_lvis(lvis.raw, predictions.detections, t) for t in ("segm", "bbox")}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import sys

    from reclip_eval.atomic import write_json_atomic
    from reclip_eval.errors import read_json
    from reclip_eval.eval.results import software_versions
    from reclip_eval.metrics.lvis import (
        FIXED_AP_DETS_PER_CATEGORY,
        MAX_DETS_PER_IMAGE,
        detection_counts,
        evaluate_lvis,
    )
    from reclip_eval.metrics.lvis_inputs import check_annotations, check_detections, default_iou_types

    # Both files are checked up front, so that a bad one fails before any evaluation runs (evaluate_lvis repeats
    # the cheap check for callers that hand it data directly).
    ground_truth = read_json(args.annotations, what="annotation file")
    missing = check_annotations(ground_truth, str(args.annotations),
                                allow_missing_federated_fields=args.allow_missing_federated_fields)
    detections = read_json(args.detections, what="detections file")
    iou_types = args.iou_type or default_iou_types(detections)
    for iou_type in iou_types:
        check_detections(detections, ground_truth, iou_type, str(args.detections))
    results = {t: evaluate_lvis(ground_truth, detections, t, fixed_ap=args.fixed_ap,
                                allow_missing_federated_fields=args.allow_missing_federated_fields)
               for t in iou_types}
    counts = detection_counts(ground_truth, detections, fixed_ap=args.fixed_ap)
    print(_table(results))
    print(f"{counts['read']} detections read, {counts['used']} used ({counts['over_cap']} beyond the cap, "
          f"{counts['unchecked_category']} of a category never checked in their image)")
    if any(missing.values()):
        print("warning: " + ", ".join(f"{n} images lack {name}" for name, n in missing.items() if n)
              + ": read as empty (--allow-missing-federated-fields), AP is not comparable to LVIS's", file=sys.stderr)
    if args.json:
        write_json_atomic(args.json, {
            "annotations": str(args.annotations), "detections": str(args.detections),
            "protocol": "fixed_ap" if args.fixed_ap else "lvis",
            "max_detections": {"per_category": FIXED_AP_DETS_PER_CATEGORY} if args.fixed_ap
            else {"per_image": MAX_DETS_PER_IMAGE},
            "detection_counts": counts,
            "federated_fields": {"allow_missing": args.allow_missing_federated_fields,
                                 "images": len(ground_truth["images"]), "images_missing": missing},
            "metrics": results, "command": " ".join(["reclip-eval", *sys.argv[1:]]), "software": software_versions(),
        })
    return 0


def run(args: argparse.Namespace) -> int:
    return {"train": _train, "predict": _predict, "evaluate": _evaluate}[args.action](args)
