"""The synthetic LVIS set is real LVIS v1 (lvis-api loads it), follows the open-vocabulary split, and the LVIS reader
finds images through coco_url and says what is missing and where LVIS comes from."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from reclip_eval.data.synth.lvis import SPLIT_FILES, lvis_categories
from reclip_eval.detect.data import LvisTrainDataset, check_category_ids, large_scale_jitter, read_lvis
from reclip_eval.errors import DataError
from reclip_eval.metrics.lvis import evaluate_lvis
from tests.detect_helpers import write_tiny_lvis


@pytest.fixture(scope="module")
def lvis_dir(tmp_path_factory):
    return write_tiny_lvis(tmp_path_factory.mktemp("lvis"))


@pytest.fixture()
def lvis_api(monkeypatch):
    monkeypatch.setattr(np, "float", float, raising=False)  # lvis 0.5.3 on numpy >= 1.24 (see test_lvis_eval.py)
    import lvis

    return lvis


def _load(lvis_dir, split):
    return json.loads((lvis_dir / SPLIT_FILES[split]).read_text())


def test_lvis_api_loads_both_splits(lvis_dir, lvis_api):
    for split in ("train", "val"):
        api = lvis_api.LVIS(str(lvis_dir / SPLIT_FILES[split]))
        data = _load(lvis_dir, split)
        assert len(api.get_img_ids()) == len(data["images"]) and len(api.get_cat_ids()) == 36
        assert api.load_anns(api.get_ann_ids())  # polygons, boxes and areas readable


def test_rare_categories_only_in_val(lvis_dir):
    train, val = _load(lvis_dir, "train"), _load(lvis_dir, "val")
    rare = {c["id"] for c in train["categories"] if c["frequency"] == "r"}
    assert sorted(c["frequency"] for c in train["categories"]).count("r") == 6 and len(rare) == 6
    assert not rare & {a["category_id"] for a in train["annotations"]}
    assert not rare & {c for img in train["images"] for c in img["neg_category_ids"]}
    assert rare & {a["category_id"] for a in val["annotations"]}
    # image_count / instance_count are over the train split (as in LVIS v1): zero for rare categories.
    assert all(c["image_count"] == 0 for c in train["categories"] if c["id"] in rare)
    assert train["categories"] == val["categories"]
    # Every colour and every shape of a rare category occurs in some base category.
    assert {c["name"].split("_")[0] for c in lvis_categories(2) if c["frequency"] == "r"} == \
        {c["name"].split("_")[0] for c in lvis_categories(2)}


def test_lvis_layout_images_through_coco_url(lvis_dir):
    val = _load(lvis_dir, "val")
    folders = {img["coco_url"].split("/")[-2] for img in val["images"]}
    assert folders == {"train2017", "val2017"}  # LVIS v1 val draws on both COCO folders
    assert all("file_name" not in img for img in val["images"])
    lvis = read_lvis(lvis_dir / "lvis_v1_val.json", lvis_dir)
    for img in lvis.images:
        path = lvis.image_path(img)
        assert path.is_file() and path.name == f"{img['id']:012d}.jpg"
    # Multiple objects per image, polygons inside the image, boxes enclosing them, per-image LVIS fields.
    counts = [len(lvis.annotations.get(img["id"], [])) for img in lvis.images]
    assert max(counts) >= 2
    sizes = {img["id"]: (img["width"], img["height"]) for img in val["images"]}
    assert len(set(sizes.values())) > 1  # some images are not square
    for ann in val["annotations"]:
        xs, ys = ann["segmentation"][0][0::2], ann["segmentation"][0][1::2]
        w, h = sizes[ann["image_id"]]
        assert 0 <= min(xs) and max(xs) <= w and 0 <= min(ys) and max(ys) <= h
        assert ann["bbox"] == pytest.approx([min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], abs=0.02)
        assert 0 < ann["area"] <= ann["bbox"][2] * ann["bbox"][3] + 1e-6
    for img in val["images"]:
        assert {"neg_category_ids", "not_exhaustive_category_ids"} <= set(img)
        present = {a["category_id"] for a in lvis.annotations.get(img["id"], [])}
        assert not present & set(img["neg_category_ids"])


def test_deterministic_for_a_seed_and_any_worker_count(tmp_path, lvis_dir):
    def digest(folder):
        h = hashlib.sha256()
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p.name != "synth.json":
                h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
        return h.hexdigest()

    assert digest(write_tiny_lvis(tmp_path / "w2", workers=2)) == digest(lvis_dir)


def test_missing_annotations_give_the_layout_and_where_lvis_comes_from(tmp_path):
    with pytest.raises(DataError) as e:
        read_lvis(tmp_path / "lvis" / "lvis_v1_val.json", tmp_path / "lvis")
    message = str(e.value)
    assert "lvis_v1_val.json" in message and "train2017" in message and "val2017" in message
    assert "lvisdataset.org" in message and "COCO 2017" in message


def test_missing_image_folders_are_named(tmp_path, lvis_dir):
    (tmp_path / "lvis").mkdir()
    shutil.copy(lvis_dir / "lvis_v1_val.json", tmp_path / "lvis" / "lvis_v1_val.json")
    with pytest.raises(DataError, match="images it names are missing"):
        read_lvis(tmp_path / "lvis" / "lvis_v1_val.json", tmp_path / "lvis")


def test_lvis_task_without_data_prints_layout(tmp_path):
    from reclip_eval.eval.tasks import load_task, locate_task_data

    with pytest.raises(DataError) as e:
        locate_task_data(load_task("lvis"), tmp_path)
    assert "lvis_v1_val.json" in str(e.value) and "val2017" in str(e.value) and "lvisdataset.org" in str(e.value)


def test_unknown_category_id_is_an_error_naming_it(lvis_dir):
    lvis = read_lvis(lvis_dir / "lvis_v1_val.json", lvis_dir)
    with pytest.raises(DataError, match=r"\[999\]"):
        check_category_ids({1, 999}, lvis)
    image_id = lvis.images[0]["id"]
    with pytest.raises(DataError, match=r"\[999\]"):
        evaluate_lvis(lvis.raw, [{"image_id": image_id, "category_id": 999, "bbox": [0, 0, 5, 5], "score": 1.0}])


def test_training_set_holds_base_categories_only(lvis_dir):
    lvis = read_lvis(lvis_dir / "lvis_v1_val.json", lvis_dir)  # val holds rare ones: they must be dropped
    base = [c for c in lvis.categories if c.frequency in ("c", "f")]
    dataset = LvisTrainDataset(lvis, base, 64, (0.5, 1.5), (0.5, 0.5, 0.5))
    rare_ids = {c.id for c in lvis.categories if c.frequency == "r"}
    base_labels = set(range(1, len(base) + 1))
    torch.manual_seed(0)
    for i in range(len(dataset)):
        canvas, target = dataset[i]
        assert canvas.shape == (3, 64, 64)
        assert set(target["labels"].tolist()) <= base_labels
        assert len(target["masks"]) == len(target["boxes"]) == len(target["labels"])
    kept_images = {img["id"] for img in dataset.images}
    only_rare = {img["id"] for img in lvis.images
                 if {a["category_id"] for a in lvis.annotations.get(img["id"], [])} <= rare_ids}
    assert not kept_images & only_rare


def test_large_scale_jitter_keeps_boxes_on_their_masks():
    image = torch.rand(3, 40, 60)
    masks = torch.zeros(1, 40, 60, dtype=torch.uint8)
    masks[0, 10:30, 20:50] = 1
    boxes = torch.tensor([[20.0, 10.0, 50.0, 30.0]])
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        canvas, out_boxes, out_masks, keep = large_scale_jitter(image, boxes, masks, 64, (0.5, 1.5), (0, 0, 0), g)
        assert canvas.shape == (3, 64, 64) and out_masks.shape == (1, 64, 64)
        if keep[0]:
            ys, xs = torch.where(out_masks[0] > 0)
            mask_box = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
            assert torch.allclose(out_boxes[0], mask_box, atol=1.5)
