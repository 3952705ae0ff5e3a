"""Readers for the layouts users have (ImageNet & variants, Flickr30K, COCO), on small fixtures written in those
exact formats. Different layouts of the same images must give the same numbers."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from reclip_eval.data.imagefolder import read_class_list
from reclip_eval.data.layouts import LayoutSpec, read_classification
from reclip_eval.errors import DataError
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task, locate_task_data
from reclip_eval.paths import data_folder
from reclip_eval.zoo.resolve import load_adapter

IMAGENET_CLASSES = read_class_list(data_folder("tasks") / "imagenet" / "classes.tsv")
# Three classes and two images each; labels 0 (tench), 1 (goldfish), 999 (toilet paper).
PICKED = {0: "n01440764", 1: "n01443537", 999: "n15075141"}


def _jpeg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def _imagenet_images():
    """(file name, wnid, seed) in file-name order, like ILSVRC2012_val_000000NN.JPEG."""
    rows, n = [], 0
    for wnid in PICKED.values():
        for _ in range(2):
            n += 1
            rows.append((f"ILSVRC2012_val_{n:08d}", wnid, 100 + n))
    return rows


def _options(data_dir):
    return EvalOptions(data_dir=data_dir, batch_size=4, workers=0)


@pytest.fixture()
def adapter(tiny_checkpoint):
    return load_adapter(str(tiny_checkpoint))


def test_imagenet_folder_flat_csv_devkit_and_hf_layouts_agree(adapter, tmp_path):
    from scipy.io import savemat

    rows = _imagenet_images()
    roots = {k: tmp_path / k / "imagenet" for k in ("folders", "csv", "devkit", "hf")}
    for stem, wnid, seed in rows:
        _jpeg(roots["folders"] / "val" / wnid / f"{stem}.JPEG", seed)
        _jpeg(roots["csv"] / "val" / f"{stem}.JPEG", seed)
        _jpeg(roots["devkit"] / "val" / f"{stem}.JPEG", seed)
    (roots["csv"] / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n" + "".join(f"{s},{w} 1 2 30 40 {w} 3 4 20 20\n" for s, w, _ in rows))
    # Devkit ids are not the sorted-wnid order: give the three classes ids 7, 3, 5 (and add a non-leaf synset).
    devkit_id = {"n01440764": 7, "n01443537": 3, "n15075141": 5}
    synsets = np.array([(i, w, 0) for w, i in devkit_id.items()] + [(1001, "n00001740", 5)],
                       dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    (roots["devkit"] / "ILSVRC2012_devkit_t12" / "data").mkdir(parents=True)
    savemat(roots["devkit"] / "ILSVRC2012_devkit_t12" / "data" / "meta.mat", {"synsets": synsets})
    (roots["devkit"] / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{devkit_id[w]}\n" for _, w, _ in rows))
    import datasets

    label_of = IMAGENET_CLASSES.index()
    hf = datasets.Dataset.from_dict(
        {"image": [str(roots["folders"] / "val" / w / f"{s}.JPEG") for s, w, _ in rows],
         "label": [label_of[w] for _, w, _ in rows]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}))
    datasets.DatasetDict({"validation": hf}).save_to_disk(str(roots["hf"] / "hf"))

    task = load_task("imagenet")
    results = {k: evaluate(adapter, task, _options(root.parent)) for k, root in roots.items()}
    layouts = {k: r["task"]["layout"] for k, r in results.items()}
    assert layouts == {"folders": "class_folders", "csv": "flat_loc_csv", "devkit": "flat_devkit",
                       "hf": "hf_dataset"}
    for r in results.values():
        assert r["counts"]["images_evaluated"] == 6 and r["counts"]["classes"] == 1000
        assert r["counts"]["classes_without_images"] == 997
        assert r["metrics"] == results["folders"]["metrics"]


def test_flat_layout_errors_name_the_file(tmp_path):
    root = tmp_path / "imagenet"
    _jpeg(root / "val" / "ILSVRC2012_val_00000001.JPEG", 1)
    (root / "LOC_val_solution.csv").write_text("ImageId,Prediction\nx,y\n")
    layout = LayoutSpec(kind="flat_loc_csv")
    with pytest.raises(DataError, match="LOC_val_solution.csv: expected the columns ImageId,PredictionString"):
        read_classification(layout, root, IMAGENET_CLASSES)
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\nILSVRC2012_val_00000002,n01440764 1\n")
    with pytest.raises(DataError, match="no label for 1 image\\(s\\).*ILSVRC2012_val_00000001.JPEG"):
        read_classification(layout, root, IMAGENET_CLASSES)


def test_imagenet_v2_folders_are_class_indices(tmp_path):
    root = tmp_path / "imagenet-v2" / "imagenetv2-matched-frequency-format-val"
    _jpeg(root / "0" / "a.jpeg", 1)
    _jpeg(root / "999" / "b.jpeg", 2)
    folder, layout = locate_task_data(load_task("imagenet-v2"), tmp_path)
    data = read_classification(layout, folder, IMAGENET_CLASSES)
    assert sorted((p.name, label) for p, label in data.items) == [("a.jpeg", 0), ("b.jpeg", 999)]


def test_imagenet_a_classifier_is_over_its_200_classes_by_wnid(adapter, tmp_path):
    from reclip_eval.eval.zeroshot import build_classifier

    task = load_task("imagenet-a")
    subset = read_class_list(task.resource(task.classes))
    assert len(subset.ids) == 200 and subset.ids[0] == "n01498041"  # stingray: label 6 of 1000, 0 of 200
    root = tmp_path / "imagenet-a" / "imagenet-a"
    _jpeg(root / "n01498041" / "0.jpg", 1)
    _jpeg(root / "n01531178" / "0.jpg", 2)  # goldfinch: second class of the subset
    folder, layout = locate_task_data(task, tmp_path)
    data = read_classification(layout, folder, subset)
    assert sorted(label for _, label in data.items) == [0, 1]
    assert build_classifier(adapter, list(subset.names), ["{}"], batch_size=64).shape[0] == 200
    results = evaluate(adapter, task, _options(tmp_path))
    assert results["counts"]["classes"] == 200 and results["counts"]["images_evaluated"] == 2
    # tench is an ImageNet class but not an ImageNet-A one: an error, never a shifted label.
    _jpeg(root / "n01440764" / "0.jpg", 3)
    with pytest.raises(DataError, match="not classes of this task \\(n01440764\\)"):
        evaluate(adapter, task, _options(tmp_path))


def _retrieval_fixture(tmp_path):
    """4 images with 5 captions each (one with a comma) in all three annotation formats."""
    images = [f"{1000 + i}.jpg" for i in range(4)]
    captions = {name: [f"caption {k} of image {name[:-4]}, seen {k} times." for k in range(5)] for name in images}
    flickr = tmp_path / "flickr" / "flickr30k"
    coco = tmp_path / "coco" / "mscoco"
    for i, name in enumerate(images):
        _jpeg(flickr / "flickr30k-images" / name, i)
        _jpeg(coco / "val2014" / f"COCO_val2014_{name}", i)
    karpathy = {"dataset": "flickr30k", "images": [
        {"filename": n, "split": "test", "sentences": [{"raw": c} for c in captions[n]]} for n in images]
        + [{"filename": "train.jpg", "split": "train", "sentences": [{"raw": "x"}]}]}
    (flickr / "dataset_flickr30k.json").write_text(json.dumps(karpathy))
    (flickr / "flickr30k_test_karpathy.txt").write_text(
        "image,caption\n" + "".join(f"{n},{c}\n" for n in images for c in captions[n]))
    coco_karpathy = {"images": [{"filepath": "val2014", "filename": f"COCO_val2014_{n}", "split": "test",
                                 "sentences": [{"raw": c} for c in captions[n]]} for n in images]}
    (coco / "dataset_coco.json").write_text(json.dumps(coco_karpathy))
    coco_captions = {"images": [{"id": i, "file_name": f"COCO_val2014_{n}"} for i, n in enumerate(images)],
                     "annotations": [{"image_id": i, "id": 10 * i + k, "caption": c}
                                     for i, n in enumerate(images) for k, c in enumerate(captions[n])]}
    (coco / "coco_test_karpathy.json").write_text(json.dumps(coco_captions))
    return flickr, coco


def test_retrieval_formats_agree(adapter, tmp_path):
    flickr, coco = _retrieval_fixture(tmp_path)
    by_json = evaluate(adapter, load_task("flickr30k"), _options(flickr.parent))
    assert by_json["task"]["layout"] == "karpathy_json" and by_json["counts"]["captions_evaluated"] == 20
    (flickr / "dataset_flickr30k.json").unlink()
    by_txt = evaluate(adapter, load_task("flickr30k"), _options(flickr.parent))
    assert by_txt["task"]["layout"] == "flickr_txt" and by_txt["metrics"] == by_json["metrics"]
    coco_json = evaluate(adapter, load_task("mscoco"), _options(coco.parent))
    shutil.move(coco / "dataset_coco.json", tmp_path / "moved.json")
    coco_captions = evaluate(adapter, load_task("mscoco"), _options(coco.parent))
    assert coco_captions["task"]["layout"] == "coco_captions"
    assert coco_captions["metrics"] == coco_json["metrics"] == by_json["metrics"]


def test_missing_real_data_lists_every_accepted_layout(adapter, tmp_path):
    with pytest.raises(DataError) as e:
        evaluate(adapter, load_task("imagenet"), _options(tmp_path))
    message = str(e.value)
    assert f"{tmp_path}/imagenet/val/<class id>/<image>.jpg" in message
    assert "LOC_val_solution.csv" in message and "ILSVRC2012_devkit_t12" in message
    assert "image-net.org" in message


def test_flat_folder_without_labels_names_the_missing_file(adapter, tmp_path):
    _jpeg(tmp_path / "imagenet" / "val" / "ILSVRC2012_val_00000001.JPEG", 1)
    with pytest.raises(DataError) as e:
        evaluate(adapter, load_task("imagenet"), _options(tmp_path))
    message = str(e.value)
    assert f"found: {tmp_path}/imagenet/val holds 1 images in one flat folder, but their labels " \
           f"({tmp_path}/imagenet/LOC_val_solution.csv) are missing" in message


def test_images_without_annotations_name_the_missing_file(adapter, tmp_path):
    _jpeg(tmp_path / "flickr30k" / "flickr30k-images" / "1.jpg", 1)
    with pytest.raises(DataError, match="flickr30k_test_karpathy.txt is missing"):
        evaluate(adapter, load_task("flickr30k"), _options(tmp_path))


def test_hub_dataset_id_offline_says_it_needs_the_network(tiny_checkpoint, tmp_path):
    from .conftest import run_cli

    out = run_cli("--model", str(tiny_checkpoint), "--task", "imagenet", "--data-dir", "hf-datasets:ILSVRC/imagenet-1k",
                  env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                       "RECLIP_CACHE": str(tmp_path / "c")})
    assert out.returncode == 2
    assert "Hugging Face dataset 'ILSVRC/imagenet-1k' could not be loaded" in out.stderr
    assert "needs the network" in out.stderr
