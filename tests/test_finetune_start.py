"""scripts/finetune_start.py (issue #36, design row (0)): the start of the finetune measured apart: the first-batch
loss is the trainer's own first finetune step, each mode's position table is the resampler's, the detail cut is a
bicubic round trip, and the record lists every condition."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reclip_eval.checkpoint import load_model
from reclip_eval.models.pos_embed import resample_pos_embed
from reclip_eval.train.loop import train
from reclip_eval.train.recipe import load_recipe

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "finetune_start.py"
OVERRIDES = ["stages.0.steps=6", "stages.0.warmup_steps=0", "stages.1.steps=1", "stages.1.warmup_steps=0"]


def _script():
    spec = importlib.util.spec_from_file_location("finetune_start", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def two_stage_run(synth_dir, tmp_path_factory):
    recipe = load_recipe("tiny-shapes", OVERRIDES)
    out = tmp_path_factory.mktemp("run") / "run"
    _, reports = train(recipe, out, data_dir=synth_dir, device="cpu", workers=0)
    return recipe, out, reports


def test_first_batch_loss_is_the_trainers_first_finetune_step(two_stage_run, synth_dir):
    recipe, out, reports = two_stage_run
    model = _script().model_at(out / "stages" / "lowres", recipe.stages[1].image_size, "bilinear")
    loss = _script().first_batch_loss(model, recipe, 1, synth_dir, workers=0)
    assert loss == pytest.approx(reports[1].losses[0], abs=1e-5)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_each_mode_resamples_the_position_table_with_the_resampler(two_stage_run, mode):
    _, out, _ = two_stage_run
    low = load_model(out / "stages" / "lowres")
    model = _script().model_at(out / "stages" / "lowres", 32, mode)
    expected = resample_pos_embed(low.visual.pos_embed.detach(), (2, 2), (4, 4), mode=mode,
                                  num_prefix=low.config.vision.pos_embed_prefix)
    torch.testing.assert_close(model.visual.pos_embed.detach(), expected)
    assert model.config.pos_embed_resample.mode == mode


def test_nearest_copies_old_rows():
    table = torch.randn(4, 3)
    out = resample_pos_embed(table, (2, 2), (4, 4), mode="nearest")
    assert all(any(torch.equal(row, old) for old in table) for row in out)


def test_detail_cut_is_a_bicubic_round_trip():
    image = Image.effect_noise((64, 48), 60).convert("RGB")
    cut = _script().DetailCut(lambda im: im, 16)(image)
    expected = image.resize((21, 16), Image.BICUBIC).resize((64, 48), Image.BICUBIC)
    assert cut.size == image.size and np.array_equal(np.asarray(cut), np.asarray(expected))


def test_the_record_lists_every_condition(two_stage_run, synth_dir, tmp_path):
    _, out, _ = two_stage_run
    target = tmp_path / "start.json"
    argv = [str(out / "stages" / "lowres"), *OVERRIDES, "--recipe", "tiny-shapes", "--data-dir", str(synth_dir),
            "--workers", "0", "--out", str(target)]
    assert _script().main(argv) == 0
    record = json.loads(target.read_text())
    assert set(record["conditions"]) == {"native", "32px-bilinear", "32px-bilinear-detail16", "32px-bicubic",
                                         "32px-bicubic-detail16", "32px-nearest", "32px-nearest-detail16"}
    assert record["chance_loss"] == pytest.approx(math.log(32))
    assert all("shapes-zeroshot/top1" in c["metrics"] for c in record["conditions"].values())
    with pytest.raises(SystemExit):  # never replaced
        _script().main(argv)
