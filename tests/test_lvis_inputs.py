"""LVIS evaluator inputs (issue #12, item 6): an annotation file without the federated fields and malformed
detections are one clear error before anything is evaluated, and the metrics say how many detections were read and
used. Both failures used to give a plausible AP with no word (or a traceback from deep inside the evaluator)."""

from __future__ import annotations

import copy
import json

import pytest

from reclip_eval.cli.main import main
from reclip_eval.errors import DataError
from reclip_eval.metrics.lvis import evaluate_lvis
from tests.test_lvis_eval import _det, _one_image_set, _random_set

FEDERATED_FIELDS = ("neg_category_ids", "not_exhaustive_category_ids")  # LVIS v1, per image


def _without_federated(ground_truth: dict, images: slice = slice(None)) -> dict:
    stripped = copy.deepcopy(ground_truth)
    for image in stripped["images"][images]:
        for name in FEDERATED_FIELDS:
            del image[name]
    return stripped


def _empty_federated(ground_truth: dict) -> dict:
    emptied = copy.deepcopy(ground_truth)
    for image in emptied["images"]:
        image.update({name: [] for name in FEDERATED_FIELDS})
    return emptied


def _cli(tmp_path, ground_truth, detections, *extra: str) -> int:
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    (tmp_path / "dets.json").write_text(json.dumps(detections))
    try:
        return main(["detect", "evaluate", "--annotations", str(tmp_path / "gt.json"), "--detections",
                     str(tmp_path / "dets.json"), "--iou-type", "bbox", "--json", str(tmp_path / "out.json"), *extra])
    except SystemExit as e:  # argparse rejecting an option the old code did not have
        return e.code


def test_missing_federated_fields_are_an_error_naming_them(tmp_path, capsys):
    ground_truth, detections = _random_set(0)
    stripped = _without_federated(ground_truth, slice(2, None))  # images 0 and 1 keep theirs
    # The effect being guarded against: without the fields, false positives on verified negatives are not counted.
    assert evaluate_lvis(_empty_federated(ground_truth), detections)["AP"] > evaluate_lvis(ground_truth, detections)["AP"]
    assert _cli(tmp_path, stripped, detections) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    image = stripped["images"][2]
    lacking = len(stripped["images"]) - 2
    for expected in ("gt.json", f"image 2 (id {image['id']})", "neg_category_ids", "not_exhaustive_category_ids",
                     f"{lacking} of {len(stripped['images'])} images", "--allow-missing-federated-fields"):
        assert expected in err, expected
    assert not (tmp_path / "out.json").exists()
    with pytest.raises(DataError, match="has no neg_category_ids or not_exhaustive_category_ids"):
        evaluate_lvis(stripped, detections)


def test_allowing_missing_federated_fields_reads_them_as_empty_and_says_so(tmp_path, lvis_api):
    ground_truth, detections = _random_set(1)
    stripped = _without_federated(ground_truth)
    assert _cli(tmp_path, stripped, detections, "--allow-missing-federated-fields") == 0
    out = json.loads((tmp_path / "out.json").read_text())
    images = len(ground_truth["images"])
    assert out["federated_fields"] == {"allow_missing": True, "images": images,
                                       "images_missing": dict.fromkeys(FEDERATED_FIELDS, images)}
    # "Read as empty" means exactly what lvis-api (which refuses the stripped file) gives with empty lists.
    (tmp_path / "empty.json").write_text(json.dumps(_empty_federated(ground_truth)))
    gt = lvis_api.LVIS(str(tmp_path / "empty.json"))
    reference = lvis_api.LVISEval(gt, lvis_api.LVISResults(gt, copy.deepcopy(detections), max_dets=300), "bbox")
    reference.run()
    assert out["metrics"]["bbox"]["AP"] == pytest.approx(reference.get_results()["AP"], abs=1e-6)
    assert evaluate_lvis(stripped, detections, allow_missing_federated_fields=True) == out["metrics"]["bbox"]
    # A complete file records that nothing was missing.
    assert _cli(tmp_path, ground_truth, detections) == 0
    assert json.loads((tmp_path / "out.json").read_text())["federated_fields"] == {
        "allow_missing": False, "images": images, "images_missing": dict.fromkeys(FEDERATED_FIELDS, 0)}


@pytest.fixture()
def lvis_api(monkeypatch):
    monkeypatch.setattr("numpy.float", float, raising=False)  # lvis 0.5.3 on numpy >= 1.24 (see test_lvis_eval.py)
    import lvis

    return lvis


def _flip(det: dict, axis: int) -> None:
    det["bbox"][axis] += det["bbox"][axis + 2]
    det["bbox"][axis + 2] = -det["bbox"][axis + 2]


BAD_ENTRIES = {  # name -> (how to break one detection, what the message must say)
    "nan-score": (lambda d: d.update(score=float("nan")), "score nan is not a finite number"),
    "inf-score": (lambda d: d.update(score=float("inf")), "score inf is not a finite number"),
    "string-score": (lambda d: d.update(score="0.9"), "score '0.9' is not a finite number"),
    "bool-score": (lambda d: d.update(score=True), "score True is not a finite number"),
    "missing-score": (lambda d: d.pop("score"), "has no score"),
    "missing-bbox": (lambda d: d.pop("bbox"), "has no bbox"),
    "three-number-bbox": (lambda d: d.update(bbox=d["bbox"][:3]), "is not 4 finite numbers"),
    "string-in-bbox": (lambda d: d["bbox"].__setitem__(0, "1"), "is not 4 finite numbers"),
    "negative-width": (lambda d: _flip(d, 0), "has a negative width or height"),
    "negative-height": (lambda d: _flip(d, 1), "has a negative width or height"),
    "unknown-image": (lambda d: d.update(image_id=987654), "image_id 987654 is not in the annotations' images"),
    "unknown-category": (lambda d: d.update(category_id=99), "category_id 99 is not in the annotations' categories"),
}


@pytest.mark.parametrize("name", list(BAD_ENTRIES))
def test_bad_detection_names_first_entry_and_count(tmp_path, capsys, name):
    ground_truth, detections = _random_set(0)
    break_entry, expected = BAD_ENTRIES[name]
    broken = [5, 17, 40]
    for index in broken:
        break_entry(detections[index])
    assert _cli(tmp_path, ground_truth, detections) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    first = detections[broken[0]]
    for part in ("dets.json", f"entry {broken[0]} (image_id {first['image_id']!r})", expected,
                 f"{len(broken)} of {len(detections)} entries have this problem"):
        assert part in err, (part, err)
    assert not (tmp_path / "out.json").exists()
    with pytest.raises(DataError, match=f"entry {broken[0]} "):
        evaluate_lvis(ground_truth, detections)


def test_detections_not_a_list_of_objects(tmp_path, capsys):
    ground_truth, perfect = _one_image_set()
    assert _cli(tmp_path, ground_truth, {"annotations": perfect}) == 2
    assert "expected a JSON list" in (err := capsys.readouterr().err) and "got an object with keys ['annotations']" in err
    assert _cli(tmp_path, ground_truth, [*perfect, [1, 1, 0.5]]) == 2
    assert f"entry {len(perfect)} (image_id None) is a JSON list, not an object" in capsys.readouterr().err


def test_mixed_problems_name_the_first_and_count_the_rest(tmp_path, capsys):
    ground_truth, perfect = _one_image_set()
    detections = copy.deepcopy(perfect)
    detections[1]["score"] = None
    detections[2]["bbox"] = [0, 0, -1, 5]
    assert _cli(tmp_path, ground_truth, detections) == 2
    err = capsys.readouterr().err
    assert "entry 1 (image_id 1) score None is not a finite number; 1 of 3 entries have this problem, 1 others" in err


def test_segm_needs_a_mask_in_every_detection(tmp_path, capsys):
    ground_truth, perfect = _one_image_set()
    detections = copy.deepcopy(perfect)
    del detections[2]["segmentation"]  # the first one has a mask, so segm is evaluated by default
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    (tmp_path / "dets.json").write_text(json.dumps(detections))
    assert main(["detect", "evaluate", "--annotations", str(tmp_path / "gt.json"), "--detections",
                 str(tmp_path / "dets.json")]) == 2
    assert "entry 2 (image_id 2) has no segmentation; 1 of 3 entries" in capsys.readouterr().err


def test_metrics_json_counts_detections_read_and_used(tmp_path):
    ground_truth, perfect = _one_image_set()
    cap = 300
    # Image 1 holds 2 true positives; `cap` low-scoring ones of category 4 (never checked in image 1) push it over
    # the per-image cap by 2, and one detection of category 1 in image 2 (never checked there) is dropped too.
    noise = [_det(1, 4, 60, 0, 10, 10, 0.01, 100, 100) for _ in range(cap)]
    unchecked = _det(2, 1, 0, 0, 10, 10, 0.5, 100, 100)
    detections = perfect + noise + [unchecked]
    assert _cli(tmp_path, ground_truth, detections) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    over_cap = sum(d["image_id"] == 1 for d in detections) - cap  # the true positives score higher: noise is cut
    assert out["detection_counts"] == {"read": len(detections), "over_cap": over_cap,
                                       "unchecked_category": cap - over_cap + 1, "used": len(perfect)}
    assert out["metrics"]["bbox"]["AP"] == 1.0  # what was used is exactly the true positives
    fixed = _cli(tmp_path, ground_truth, detections, "--fixed-ap")
    assert fixed == 0
    assert json.loads((tmp_path / "out.json").read_text())["detection_counts"] == {
        "read": len(detections), "over_cap": 0, "unchecked_category": cap + 1, "used": len(perfect)}


def test_task_run_checks_annotations_before_the_model_runs(tmp_path):
    from reclip_eval.data.layouts import LayoutSpec
    from reclip_eval.detect.adapter import DetectorAdapter
    from reclip_eval.eval.detection import run_detection
    from reclip_eval.eval.tasks import load_task

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"the model was touched ({name}) before the annotations were checked")

    adapter = DetectorAdapter.__new__(DetectorAdapter)  # no weights: nothing may reach them
    adapter.loaded, adapter.model_id = Untouchable(), "detector"
    ground_truth, _ = _one_image_set()
    (tmp_path / "val2017").mkdir()
    (tmp_path / "train2017").mkdir()
    (tmp_path / "lvis_v1_val.json").write_text(json.dumps(_without_federated(ground_truth)))
    layout = LayoutSpec(kind="lvis_json", annotations="lvis_v1_val.json")
    with pytest.raises(DataError, match="lvis_v1_val.json: image 0 .* has no neg_category_ids"):
        run_detection(adapter, load_task("shapes-lvis"), tmp_path, layout, batch_size=1, workers=0)
