"""The Python API at the package top (reclip_eval/api.py): load a model by any --model spec, evaluate it on a task,
list models and tasks. It runs the CLI's own evaluation code, so its results equal the CLI's; it writes a results
file only when asked, by the CLI's rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import reclip_eval
from reclip_eval.cli.main import main
from reclip_eval.errors import UnknownNameError


def test_package_top_lists_the_api():
    assert {"load", "evaluate", "list_models", "list_tasks"} <= set(dir(reclip_eval))
    with pytest.raises(AttributeError, match="no attribute 'create_model'"):
        reclip_eval.create_model  # noqa: B018


def test_list_models_and_tasks():
    assert {"reclip-demo", "reclip-64"} <= set(reclip_eval.list_models())
    assert {"shapes-zeroshot", "imagenet", "mscoco"} <= set(reclip_eval.list_tasks())


def test_loaded_model_encodes_images_and_texts():
    model = reclip_eval.load("reclip-demo", device="auto", precision="auto")
    assert (model.device, model.precision) == ("cpu", "fp32")  # auto on a machine without a GPU
    pixels = model.transform(Image.new("RGB", (90, 70), (200, 30, 30)))
    assert tuple(pixels.shape) == (3, model.image_size, model.image_size)
    images = model.encode_images(pixels[None])
    texts = model.encode_texts(["a red circle", "a blue square"])
    assert images.shape == (1, texts.shape[1]) and texts.shape[0] == 2
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    assert model.tokenize(["a red circle"]).shape[0] == 1
    assert model.describe()["id"] == "reclip-demo"
    with pytest.raises(UnknownNameError, match="unknown model 'reclip-46'"):
        reclip_eval.load("reclip-46")


def test_evaluate_equals_the_cli_and_writes_only_when_asked(synth_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the CLI's default output would go
    model = reclip_eval.load("reclip-demo", device="cpu")
    results = reclip_eval.evaluate(model, "shapes-zeroshot", data_dir=synth_dir, workers=0)
    assert sorted(p.name for p in tmp_path.rglob("*.json")) == []  # no output: nothing written

    assert main(["--model", "reclip-demo", "--task", "shapes-zeroshot", "--data-dir", str(synth_dir),
                 "--output", str(tmp_path / "cli"), "--workers", "0"]) == 0
    [cli_file] = (tmp_path / "cli").glob("*.json")
    cli = json.loads(cli_file.read_text())
    assert results["metrics"] == cli["metrics"] and results["counts"] == cli["counts"]
    for side in ("model", "task"):
        assert results[side]["id" if side == "model" else "name"] == cli[side]["id" if side == "model" else "name"]
    assert results["task"]["data_fingerprint"] == cli["task"]["data_fingerprint"]

    # Asked to write: the CLI's file name, and the results_store's rules (the same measurement is kept as it is).
    stored = reclip_eval.evaluate("reclip-demo", "shapes-zeroshot", data_dir=synth_dir, workers=0,
                                  output=tmp_path / "api")
    [api_file] = (tmp_path / "api").glob("*.json")
    assert api_file.name == cli_file.name and json.loads(api_file.read_text())["metrics"] == stored["metrics"]
    before = api_file.read_bytes()
    reclip_eval.evaluate(model, "shapes-zeroshot", data_dir=synth_dir, workers=0, output=tmp_path / "api")
    assert api_file.read_bytes() == before
