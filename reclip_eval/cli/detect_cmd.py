"""reclip-eval detect evaluate: LVIS evaluation of any detections file in the LVIS/COCO results format."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  reclip-eval detect evaluate --annotations lvis_v1_val.json --detections dets.json
  reclip-eval detect evaluate --annotations lvis_v1_val.json --detections dets.json --iou-type segm --json ap.json
  reclip-eval detect evaluate --annotations lvis_v1_val.json --detections dets.json --fixed-ap
"""


def add_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reclip-eval detect", description="Open-vocabulary detection.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)
    e = sub.add_parser("evaluate", help="LVIS AP (AP, AP50, AP75, APs/m/l, APr/c/f) of a detections file")
    e.add_argument("--annotations", type=Path, required=True, help="LVIS v1 annotation JSON (e.g. lvis_v1_val.json)")
    e.add_argument("--detections", type=Path, required=True,
                   help="results JSON: [{image_id, category_id, score, bbox, segmentation (RLE, for segm)}]")
    e.add_argument("--iou-type", choices=["bbox", "segm"], action="append",
                   help="bbox and/or segm (default: bbox, plus segm when the detections carry masks)")
    e.add_argument("--fixed-ap", action="store_true",
                   help="Fixed AP (Dave et al. 2021): no per-image cap, at most 10,000 detections per category")
    e.add_argument("--json", type=Path, help="write the metrics here (atomically)")
    return p


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from tabulate import tabulate

    from reclip_eval.atomic import write_json_atomic
    from reclip_eval.detect.lvis_eval import FIXED_AP_DETS_PER_CATEGORY, MAX_DETS_PER_IMAGE, evaluate_lvis
    from reclip_eval.errors import DataError
    from reclip_eval.eval.results import software_versions

    try:
        detections = json.loads(args.detections.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{args.detections}: detections file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{args.detections}: not valid JSON ({e})") from None
    iou_types = args.iou_type or (["bbox", "segm"] if detections and "segmentation" in detections[0] else ["bbox"])
    results = {t: evaluate_lvis(args.annotations, detections, t, fixed_ap=args.fixed_ap) for t in iou_types}
    names = list(next(iter(results.values())))
    print(tabulate([[t, *(f"{100 * m[n]:.2f}" if m[n] >= 0 else "-" for n in names)] for t, m in results.items()],
                   headers=["iou", *names], tablefmt="github", disable_numparse=True))
    if args.json:
        write_json_atomic(args.json, {
            "annotations": str(args.annotations), "detections": str(args.detections),
            "protocol": "fixed_ap" if args.fixed_ap else "lvis",
            "max_detections": {"per_category": FIXED_AP_DETS_PER_CATEGORY} if args.fixed_ap
            else {"per_image": MAX_DETS_PER_IMAGE},
            "metrics": results, "command": " ".join(["reclip-eval", *sys.argv[1:]]), "software": software_versions(),
        })
    return 0
