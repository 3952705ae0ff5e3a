"""The LVIS evaluator: equal to lvis-api (the reference implementation) to 1e-6, bbox and segm, and the LVIS
rules on fixtures with known answers.

lvis 0.5.3 uses `np.float`, removed in numpy 1.24: restored for lvis-api in one place, the fixture below.
"""

import copy
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from reclip_eval.errors import DataError
from reclip_eval.metrics.lvis import evaluate_lvis

FREQUENCIES = ["f", "f", "f", "c", "c", "c", "r", "r"]


@pytest.fixture()
def lvis_api(monkeypatch):
    monkeypatch.setattr(np, "float", float, raising=False)  # lvis 0.5.3 on numpy >= 1.24 (see module docstring)
    import lvis

    return lvis


def _rect(x, y, w, h):
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _random_set(seed=0, images=10):
    rng = np.random.default_rng(seed)
    categories = [{"id": i + 1, "name": f"cat{i + 1}", "synonyms": [f"cat{i + 1}"], "frequency": f}
                  for i, f in enumerate(FREQUENCIES)]
    gt_images, annotations, detections = [], [], []
    for image_id in range(1, images + 1):
        height, width = int(rng.integers(80, 200)), int(rng.integers(80, 200))
        present = sorted(rng.choice(8, size=int(rng.integers(1, 4)), replace=False) + 1)
        absent = [c for c in range(1, 9) if c not in present]
        neg = sorted(int(c) for c in rng.choice(absent, size=2, replace=False))
        not_exhaustive = [int(present[0])] if rng.random() < 0.4 else []
        gt_images.append({"id": image_id, "height": height, "width": width, "neg_category_ids": neg,
                          "not_exhaustive_category_ids": not_exhaustive,
                          "coco_url": f"http://images.cocodataset.org/val2017/{image_id:012d}.jpg"})
        for category in present:
            for _ in range(int(rng.integers(1, 3))):
                w, h = float(rng.uniform(8, width / 2)), float(rng.uniform(8, height / 2))
                x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(category),
                                    "bbox": [x, y, w, h], "area": w * h, "segmentation": _rect(x, y, w, h)})
                if rng.random() < 0.85:  # a noisy true positive
                    jitter = rng.normal(0, 3, size=4)
                    detections.append(_det(image_id, int(category), x + jitter[0], y + jitter[1],
                                           max(2, w + jitter[2]), max(2, h + jitter[3]), rng.uniform(0.3, 1),
                                           height, width))
        # False positives over every category (annotated, negative, not exhaustive, never checked).
        for _ in range(int(rng.integers(3, 8))):
            w, h = float(rng.uniform(5, width / 3)), float(rng.uniform(5, height / 3))
            detections.append(_det(image_id, int(rng.integers(1, 9)), rng.uniform(0, width - w),
                                   rng.uniform(0, height - h), w, h, rng.uniform(0, 0.8), height, width))
    # Image 1 gets more than 300 detections: the per-image cap must keep the best 300.
    for _ in range(320):
        detections.append(_det(1, gt_images[0]["neg_category_ids"][0], 1, 1, 10, 10, rng.uniform(0, 0.2),
                               gt_images[0]["height"], gt_images[0]["width"]))
    return {"images": gt_images, "annotations": annotations, "categories": categories}, detections


def _det(image_id, category, x, y, w, h, score, height, width):
    x, y, w, h = float(x), float(y), float(w), float(h)
    rle = mask_utils.merge(mask_utils.frPyObjects(_rect(x, y, w, h), height, width))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"image_id": image_id, "category_id": category, "bbox": [x, y, w, h], "score": float(score),
            "segmentation": rle}


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_lvis_api(lvis_api, tmp_path, iou_type, seed):
    ground_truth, detections = _random_set(seed)
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    (tmp_path / "dets.json").write_text(json.dumps(detections))
    ours = evaluate_lvis(tmp_path / "gt.json", tmp_path / "dets.json", iou_type)

    gt = lvis_api.LVIS(str(tmp_path / "gt.json"))
    results = lvis_api.LVISResults(gt, copy.deepcopy(detections), max_dets=300)
    reference = lvis_api.LVISEval(gt, results, iou_type)
    reference.run()
    theirs = reference.get_results()
    assert 0.05 < ours["AP"] < 0.95  # a non-trivial case
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key


def _one_image_set():
    ground_truth = {
        "images": [{"id": 1, "height": 100, "width": 100, "neg_category_ids": [3],
                    "not_exhaustive_category_ids": [2], "coco_url": "http://images.cocodataset.org/val2017/1.jpg"},
                   {"id": 2, "height": 100, "width": 100, "neg_category_ids": [],
                    "not_exhaustive_category_ids": [], "coco_url": "http://images.cocodataset.org/train2017/2.jpg"}],
        "categories": [{"id": 1, "name": "a", "frequency": "f"}, {"id": 2, "name": "b", "frequency": "c"},
                       {"id": 3, "name": "c", "frequency": "r"}, {"id": 4, "name": "d", "frequency": "r"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20], "area": 600,
             "segmentation": _rect(10, 10, 30, 20)},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 20, 20], "area": 400,
             "segmentation": _rect(50, 50, 20, 20)},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [20, 20, 40, 40], "area": 1600,
             "segmentation": _rect(20, 20, 40, 40)}],
    }
    perfect = [_det(1, 1, 10, 10, 30, 20, 0.9, 100, 100), _det(1, 2, 50, 50, 20, 20, 0.8, 100, 100),
               _det(2, 3, 20, 20, 40, 40, 0.7, 100, 100)]
    return ground_truth, perfect


def test_known_answers():
    ground_truth, perfect = _one_image_set()
    assert evaluate_lvis(ground_truth, perfect, "bbox")["AP"] == 1.0
    assert evaluate_lvis(ground_truth, perfect, "segm")["AP"] == 1.0
    # Not exhaustively annotated category 2: an extra unmatched detection of it, scored above the true one,
    # is ignored.
    extra = _det(1, 2, 0, 70, 10, 10, 0.95, 100, 100)
    assert evaluate_lvis(ground_truth, perfect + [extra], "bbox")["AP"] == 1.0
    # In image 1 category 3 is a verified negative: a detection of it there is a false positive (ranked above the
    # true one in image 2), so rare AP drops.
    negative = _det(1, 3, 0, 0, 10, 10, 0.99, 100, 100)
    assert evaluate_lvis(ground_truth, perfect + [negative], "bbox")["APr"] < 0.6
    # Category 1 is neither annotated nor a verified negative in image 2: a detection of it there is dropped,
    # whatever its score.
    unchecked = _det(2, 1, 0, 0, 10, 10, 0.99, 100, 100)
    assert evaluate_lvis(ground_truth, perfect + [unchecked], "bbox")["AP"] == 1.0


def test_fixed_ap_caps_per_category_not_per_image():
    ground_truth, perfect = _one_image_set()
    # 300 confident detections of category 4 (never checked in image 1, so dropped by the evaluation) fill image
    # 1's quota of 300 before its true positives: the standard per-image cap loses them, Fixed AP (at most 10,000
    # per category over the set, no per-image cap) keeps them.
    noise = [_det(1, 4, 60, 0, 10, 10, 0.99, 100, 100) for _ in range(300)]
    standard = evaluate_lvis(ground_truth, perfect + noise, "bbox")
    fixed = evaluate_lvis(ground_truth, perfect + noise, "bbox", fixed_ap=True)
    assert standard["APf"] == 0.0 and standard["APc"] == 0.0  # image 1's true positives were cut
    assert fixed["AP"] == 1.0


def test_bad_input_names_the_problem(tmp_path):
    ground_truth, perfect = _one_image_set()
    with pytest.raises(DataError, match=r"category_id 99 is not in the annotations' categories \(unknown category_ids: \[99\]\)"):
        evaluate_lvis(ground_truth, perfect + [_det(1, 99, 0, 0, 5, 5, 0.5, 100, 100)], "bbox")
    with pytest.raises(DataError, match=r"unknown image_ids: \[7\]"):
        evaluate_lvis(ground_truth, [_det(7, 1, 0, 0, 5, 5, 0.5, 100, 100)], "bbox")
    with pytest.raises(DataError, match="missing.json: detections file not found"):
        evaluate_lvis(ground_truth, tmp_path / "missing.json", "bbox")
    (tmp_path / "cut.json").write_text('[{"image_id": 1, "category_id"')  # a truncated write
    with pytest.raises(DataError, match=r"cut.json: not valid JSON \(Expecting"):
        evaluate_lvis(ground_truth, tmp_path / "cut.json", "bbox")
    with pytest.raises(DataError, match="is a folder; expected the detections file itself"):
        evaluate_lvis(ground_truth, tmp_path, "bbox")
    no_freq = copy.deepcopy(ground_truth)
    del no_freq["categories"][0]["frequency"]
    with pytest.raises(DataError, match="have no LVIS frequency"):
        evaluate_lvis(no_freq, perfect, "bbox")


def test_cli_evaluate_writes_json(tmp_path, capsys):
    from reclip_eval.cli.main import main

    ground_truth, perfect = _one_image_set()
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    (tmp_path / "dets.json").write_text(json.dumps(perfect))
    code = main(["detect", "evaluate", "--annotations", str(tmp_path / "gt.json"), "--detections",
                 str(tmp_path / "dets.json"), "--json", str(tmp_path / "out.json")])
    assert code == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert set(out["metrics"]) == {"bbox", "segm"} and out["metrics"]["segm"]["AP"] == 1.0
    assert out["max_detections"] == {"per_image": 300}
    printed = capsys.readouterr().out
    assert "| bbox " in printed and "| 100.00 " in printed
    (tmp_path / "bad.json").write_text(json.dumps(perfect + [_det(1, 42, 0, 0, 5, 5, 0.5, 100, 100)]))
    assert main(["detect", "evaluate", "--annotations", str(tmp_path / "gt.json"), "--detections",
                 str(tmp_path / "bad.json")]) == 2
    assert "category_id 42 is not in the annotations' categories" in capsys.readouterr().err
