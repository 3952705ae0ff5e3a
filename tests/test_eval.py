"""The evaluation path end to end on generated data, its results JSON, and its bad-input paths."""

import json

import pytest

from reclip_eval.classifier.templates import read_templates
from reclip_eval.errors import DataError
from reclip_eval.eval.results_store import results_path, store_results
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task
from reclip_eval.zoo.resolve import load_adapter


@pytest.fixture()
def adapter(tiny_checkpoint):
    return load_adapter(str(tiny_checkpoint))


def _options(data_dir):
    return EvalOptions(data_dir=data_dir, batch_size=32, workers=0)


def test_zeroshot_results_json(adapter, synth_dir, tmp_path):
    results = evaluate(adapter, load_task("shapes-zeroshot"), _options(synth_dir), argv=["--task", "x"])
    assert set(results["metrics"]) == {"top1", "top5", "mean_per_class_recall"}
    assert 0 <= results["metrics"]["top1"] <= results["metrics"]["top5"] <= 1
    assert results["counts"]["images_evaluated"] == 108 and results["counts"]["images_skipped"] == 0
    assert results["model"]["weights"]["sha256"] and results["model"]["image_size"] == 32
    assert results["model"]["preprocess"]["interpolation"] == "bicubic"
    assert results["prompts"]["templates"] == 7 and len(results["prompts"]["classnames_sha256"]) == 64
    assert results["precision"] == "fp32" and results["task"]["data_fingerprint"]
    assert results["run"]["command"] == "reclip-eval --task x" and results["run"]["software"]["torch"]
    path = store_results(results, results_path(results, tmp_path / "out")).path
    assert json.loads(path.read_text())["metrics"] == results["metrics"]
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_retrieval_metrics_both_directions(adapter, synth_dir):
    results = evaluate(adapter, load_task("shapes-retrieval"), _options(synth_dir))
    assert set(results["metrics"]) == {f"{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}
    assert results["counts"]["captions_evaluated"] == 150


def test_corrupt_image_is_counted_reported_and_skipped(adapter, synth_dir, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_dir / "shapes-zeroshot", data / "shapes-zeroshot")
    bad = sorted((data / "shapes-zeroshot" / "val" / "red_circle").glob("*.jpg"))[0]
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    (data / "shapes-zeroshot" / "val" / "blue_star" / "junk.jpg").write_text("not an image")
    results = evaluate(adapter, load_task("shapes-zeroshot"), _options(data))
    counts = results["counts"]
    assert (counts["images_total"], counts["images_evaluated"], counts["images_skipped"]) == (109, 107, 2)
    assert counts["metric_denominator"] == "images_evaluated"
    reasons = {s["path"]: s["reason"] for s in results["skipped"]}
    assert str(bad) in reasons and any(p.endswith("junk.jpg") for p in reasons)


def test_missing_data_prints_layout_and_source(adapter, tmp_path):
    (tmp_path / "classes.tsv").write_text("n01\tcat\nn02\tdog\n")
    (tmp_path / "t.txt").write_text("a photo of a {}.\n")
    task = tmp_path / "mytask.yaml"
    task.write_text(
        "name: mytask\nkind: zeroshot_classification\ndescription: d\n"
        "data: {folder: my-images, layouts: [{kind: class_folders, split: val}]}\n"
        f"classes: {tmp_path / 'classes.tsv'}\ntemplates: {tmp_path / 't.txt'}\n"
        "get_data: download it from example.org\n"
    )
    with pytest.raises(DataError) as e:
        evaluate(adapter, load_task(str(task)), _options(tmp_path / "empty"))
    message = str(e.value)
    assert "task 'mytask': data not found" in message
    assert f"{tmp_path / 'empty' / 'my-images'}/val/<class id>/<image>.jpg" in message
    assert "download it from example.org" in message


def test_synthetic_task_is_generated_on_first_use(adapter, tmp_path):
    task = load_task("shapes-retrieval")
    (tmp_path / "fresh").mkdir()  # a data root must exist: a missing one is refused (tests/test_first_contact.py)
    results = evaluate(adapter, task, _options(tmp_path / "fresh"))
    assert results["counts"]["images_evaluated"] == 250
    assert (tmp_path / "fresh" / "shapes-retrieval" / "synth.json").is_file()


def test_unknown_folder_and_wrong_templates(adapter, synth_dir, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_dir / "shapes-zeroshot", data / "shapes-zeroshot")
    (data / "shapes-zeroshot" / "val" / "n01440764").mkdir()
    with pytest.raises(DataError, match="folder\\(s\\) are not classes of this task \\(n01440764\\)"):
        evaluate(adapter, load_task("shapes-zeroshot"), _options(data))
    templates = tmp_path / "t.txt"
    templates.write_text("a photo of a {}.\na photo without a slot.\n")
    with pytest.raises(DataError, match="line 2: 'a photo without a slot.'"):
        read_templates(templates)


def test_missing_class_folder_does_not_shift_labels(tiny_checkpoint, synth_dir, tmp_path):
    """Labels are matched by class id: removing one class folder leaves every other image's label unchanged."""
    import shutil

    from reclip_eval.data.imagefolder import read_class_list, scan_image_folder
    from reclip_eval.paths import data_folder

    data = tmp_path / "val"
    shutil.copytree(synth_dir / "shapes-zeroshot" / "val", data)
    shutil.rmtree(data / "red_circle")
    classes = read_class_list(data_folder("tasks") / "shapes" / "classes.tsv")
    scan = scan_image_folder(data, classes)
    assert scan.empty_classes == ["red_circle"]
    assert all(classes.ids[label] == path.parent.name for path, label in scan.items)


def test_class_embeddings_are_cached_per_model_and_prompts(adapter, synth_dir, tmp_path):
    from reclip_eval.paths import cache_dir

    first = evaluate(adapter, load_task("shapes-zeroshot"), _options(synth_dir))
    entries = list((cache_dir() / "class_embeddings").glob("*.safetensors"))
    assert len(entries) == 1
    entries[0].write_bytes(b"garbage")  # a damaged entry is recomputed, not trusted
    again = evaluate(adapter, load_task("shapes-zeroshot"), _options(synth_dir))
    assert again["metrics"] == first["metrics"]
    assert len(list((cache_dir() / "class_embeddings").glob("*.safetensors"))) == 1
