"""End to end on the synthetic LVIS set: train a few steps on the base categories from a CLIP checkpoint, save the
detector atomically, load it back strictly, predict on val (all categories, rare ones novel) and evaluate through
the task runner (`reclip-eval --model DETECTOR --task shapes-lvis`) and the CLI."""

import json
import math

import pytest
import torch

from reclip_eval.checkpoint import load_model
from reclip_eval.detect.checkpoint import load_detector
from reclip_eval.detect.config import load_detect_recipe
from reclip_eval.detect.data import read_lvis
from reclip_eval.detect.predict import predict_lvis
from reclip_eval.detect.train import train_detector
from reclip_eval.detect.vocabulary import read_templates_file
from reclip_eval.errors import CheckpointError, ConfigError
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task
from reclip_eval.registry import named_yaml_files
from reclip_eval.train.recipe import clip_recipe_files, load_recipe
from reclip_eval.zoo.resolve import load_adapter
from tests.conftest import run_cli
from tests.detect_helpers import TINY_DETECTOR, write_tiny_lvis


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_tiny_lvis(root)
    return root


@pytest.fixture(scope="module")
def trained(tiny_checkpoint, data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "detector"
    torch.manual_seed(0)
    loaded, report = train_detector(load_detect_recipe("detect-shapes", TINY_DETECTOR), str(tiny_checkpoint), out,
                                    data_dir=data_root, device="cpu")
    return out, loaded, report


def test_detector_recipes_load_and_are_kept_apart_from_clip_recipes():
    detector_recipes = sorted(set(named_yaml_files("training")) - set(clip_recipe_files()))
    assert detector_recipes == ["detect-lvis-vitl16", "detect-shapes"]
    for name in detector_recipes:
        recipe = load_detect_recipe(name)
        assert recipe.name == name and recipe.data.train_frequencies == ["c", "f"]
        assert read_templates_file(recipe.detector.classifier.templates)
        assert (recipe.detector.open_vocab.alpha, recipe.detector.open_vocab.beta) == (0.35, 0.65)
    with pytest.raises(ConfigError, match="detect train"):
        load_recipe("detect-shapes")
    with pytest.raises(ConfigError, match="schedule.stepz: unknown key"):
        load_detect_recipe("detect-shapes", ["schedule.stepz=3"])


def test_training_on_base_categories_writes_a_strict_checkpoint(trained, data_root):
    out, loaded, report = trained
    assert report.steps == 3 and all(math.isfinite(v) for v in report.losses)
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "clip", "recipe.yaml",
                                               "training.json", "README.md"}
    train = json.loads((data_root / "shapes-lvis" / "lvis_v1_train.json").read_text())
    rare = {c["name"] for c in train["categories"] if c["frequency"] == "r"}
    assert len(loaded.base_vocabulary) == 30 and not rare & set(loaded.base_vocabulary)  # rare names removed
    reloaded = load_detector(out)
    assert reloaded.base_vocabulary == loaded.base_vocabulary and reloaded.templates == loaded.templates
    for key, value in loaded.detector.trainable_state_dict().items():
        assert torch.equal(value.cpu(), reloaded.detector.trainable_state_dict()[key]), key
    # The detector's backbone was finetuned; the frozen VLM copy is still the starting CLIP tower.
    start = load_detector(out).clip.visual.transformer.blocks[0].attn.qkv.weight
    assert torch.equal(reloaded.detector.roi_heads.vlm.tower.transformer.blocks[0].attn.qkv.weight, start)
    assert not torch.equal(reloaded.detector.backbone.blocks[0].attn.qkv.weight, start)


def test_predict_and_evaluate_through_the_task_runner(trained, data_root, tiny_checkpoint):
    out, _, _ = trained
    results = evaluate(load_adapter(str(out)), load_task("shapes-lvis"), EvalOptions(data_dir=data_root, workers=0),
                       argv=["--model", str(out), "--task", "shapes-lvis"])
    # The runner's metrics are the LVIS evaluator's on this detector's own predictions (mask AP unprefixed, box
    # AP as box_*), so the runner neither drops nor adds detections on the way.
    from reclip_eval.eval.detection import MAX_BATCH
    from reclip_eval.metrics.lvis import evaluate_lvis

    folder = data_root / "shapes-lvis"
    lvis = read_lvis(folder / "lvis_v1_val.json", folder)
    detections = predict_lvis(load_detector(out), lvis, batch_size=MAX_BATCH).detections
    expected = {**evaluate_lvis(lvis.raw, detections, "segm"),
                **{f"box_{k}": v for k, v in evaluate_lvis(lvis.raw, detections, "bbox").items()}}
    assert results["metrics"] == pytest.approx(expected, abs=1e-6)
    assert results["counts"]["detections"] == len(detections)
    assert results["task"]["kind"] == "detection" and results["task"]["synthetic_manifest"]["set"] == "lvis"
    assert results["counts"]["images_evaluated"] == results["counts"]["images_total"] == 10
    assert results["counts"]["novel_categories"] == 6 and results["counts"]["categories"] == 36
    assert results["model"]["family"] == "reclip-detector" and results["model"]["compute"]["image_gmacs"] > 0
    assert results["prompts"]["templates"] == 7 and results["schema_version"] == 1
    with pytest.raises(CheckpointError, match="needs a detector"):
        evaluate(load_adapter(str(tiny_checkpoint)), load_task("shapes-lvis"),
                 EvalOptions(data_dir=data_root, workers=0))


def test_detections_are_lvis_results_with_rle_masks(trained, data_root):
    out, _, _ = trained
    folder = data_root / "shapes-lvis"
    lvis = read_lvis(folder / "lvis_v1_val.json", folder)
    predictions = predict_lvis(load_detector(out), lvis, batch_size=4)
    assert predictions.detections and predictions.images_evaluated == 10
    per_image = {}
    for det in predictions.detections:
        per_image[det["image_id"]] = per_image.get(det["image_id"], 0) + 1
        assert set(det) == {"image_id", "category_id", "bbox", "score", "segmentation"}
        assert set(det["segmentation"]) == {"size", "counts"} and isinstance(det["segmentation"]["counts"], str)
        image = next(i for i in lvis.images if i["id"] == det["image_id"])
        assert det["segmentation"]["size"] == [image["height"], image["width"]]
    assert max(per_image.values()) <= 50  # detections_per_image of the tiny recipe


def test_random_init_backbone(tiny_checkpoint, data_root, tmp_path):
    overrides = [o for o in TINY_DETECTOR if not o.startswith("schedule.steps")] + ["schedule.steps=1"]
    loaded, _ = train_detector(load_detect_recipe("detect-shapes", overrides), str(tiny_checkpoint),
                               tmp_path / "random", data_dir=data_root, device="cpu", random_init=True)
    record = json.loads((tmp_path / "random" / "training.json").read_text())
    assert record["random_init"] is True and record["backbone_sha256"] is None
    assert not torch.equal(loaded.clip.text.token_embed.weight, load_model(tiny_checkpoint).text.token_embed.weight)


def test_cli_train_predict_evaluate(trained, data_root, tmp_path):
    out, _, _ = trained
    annotations = data_root / "shapes-lvis" / "lvis_v1_val.json"
    dets = tmp_path / "dets.json"
    result = run_cli("detect", "predict", "--model", str(out), "--annotations", str(annotations), "--out", str(dets),
                     "--device", "cpu", "--evaluate")
    assert result.returncode == 0, result.stderr
    assert "APr" in result.stdout and json.loads(dets.read_text())
    result = run_cli("detect", "evaluate", "--annotations", str(annotations), "--detections", str(dets))
    assert result.returncode == 0 and "segm" in result.stdout, result.stderr
    result = run_cli("train", "detect-shapes", "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "reclip-eval detect train" in result.stderr
