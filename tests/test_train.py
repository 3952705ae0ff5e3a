"""The minimal trainer: the loss falls, stages change the image size and carry the upsampled embedding."""

import json

import pytest
import torch

from reclip_eval.checkpoint import load_model
from reclip_eval.models.pos_embed import resample_pos_embed
from reclip_eval.train.loop import TrainingError, train
from reclip_eval.train.loss import contrastive_loss
from reclip_eval.train.recipe import load_recipe
from reclip_eval.train.schedule import lr_factor


def test_loss_matches_equations_1_and_2():
    torch.manual_seed(0)
    p = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    q = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    tau = 0.1
    sim = p @ q.t() / tau
    l_i2t = -torch.stack([sim[i, i] - torch.logsumexp(sim[i], 0) for i in range(5)]).mean()
    l_t2i = -torch.stack([sim[i, i] - torch.logsumexp(sim[:, i], 0) for i in range(5)]).mean()
    torch.testing.assert_close(contrastive_loss(p, q, torch.tensor(1 / tau)), (l_i2t + l_t2i) / 2)


def test_warmup_then_linear_decay():
    stage = load_recipe("reclip-64").stages[1]  # 5000 warmup, 50000 steps, linear to 0
    f = lr_factor(stage.lr_schedule())
    assert f(0) == pytest.approx(1 / 5000) and f(4999) == pytest.approx(1.0)
    assert f(5000 + 22500) == pytest.approx(0.5) and f(49999) == pytest.approx(1 / 45000, abs=1e-6)


def test_two_stage_run(synth_dir, tmp_path):
    """Loss falls; stage 2 runs at the new size and starts from the upsampled stage-1 embedding."""
    recipe = load_recipe("tiny-shapes", [
        "stages.0.steps=40", "stages.0.batch_size=32",
        # lr 0 in stage 2 freezes the weights, so its result is exactly what stage 2 started from.
        "stages.1.steps=3", "stages.1.optimizer.lr=0.0", "stages.1.warmup_steps=0",
    ])
    model, reports = train(recipe, tmp_path / "run", data_dir=synth_dir, device="cpu", workers=0)
    low, high = reports
    assert (low.image_size, high.image_size) == (16, 32) and (low.pos_embed_grid, high.pos_embed_grid) == ((2, 2), (4, 4))
    first, last = sum(low.losses[:5]) / 5, sum(low.losses[-5:]) / 5
    assert last < first - 0.1, f"loss did not fall: {first:.3f} -> {last:.3f}"

    stage1 = load_model(tmp_path / "run" / "stages" / "lowres")
    final = load_model(tmp_path / "run")
    assert stage1.config.vision.image_size == 16 and final.config.vision.image_size == 32
    expected = resample_pos_embed(stage1.visual.pos_embed.detach(), (2, 2), (4, 4))
    torch.testing.assert_close(final.visual.pos_embed, expected)
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert [s["image_size"] for s in record["stages"]] == [16, 32] and record["samples_seen"] == 40 * 32 + 3 * 32
    assert (tmp_path / "run" / "recipe.yaml").read_text().startswith("name: tiny-shapes")
    assert record["stages"][0]["gmacs_per_sample"] < record["stages"][1]["gmacs_per_sample"]  # 16 px < 32 px
    assert record["device"] == "cpu" and record["device_hours"] > 0


def test_nan_loss_stops_with_the_step(synth_dir, tmp_path, monkeypatch):
    recipe = load_recipe("tiny-shapes", ["stages.0.steps=3", "stages.0.warmup_steps=0"])
    monkeypatch.setattr("reclip_eval.train.slip.contrastive_loss", lambda *a: torch.tensor(float("nan")))
    with pytest.raises(TrainingError, match="stage 'lowres' step 0: loss is nan; stopping: no resume point"):
        train(recipe, tmp_path / "run", data_dir=synth_dir, device="cpu", workers=0)
    # With resume points on disk, the message names the last good one.
    recipe = load_recipe("tiny-shapes", ["stages.0.steps=2", "stages.0.warmup_steps=0", "stages.1.steps=2",
                                         "stages.1.warmup_steps=0"])
    real_loss = contrastive_loss
    calls = []

    def nan_in_stage_two(*args):
        calls.append(1)
        return real_loss(*args) if len(calls) <= 2 else torch.tensor(float("inf"))

    monkeypatch.setattr("reclip_eval.train.slip.contrastive_loss", nan_in_stage_two)
    with pytest.raises(TrainingError, match=r"stage 'hires' step 0: loss is inf; stopping: the last good state is "
                                            r".*resume/stage0-step00000002"):
        train(recipe, tmp_path / "run2", data_dir=synth_dir, device="cpu", workers=0)
    assert not (tmp_path / "run" / "model.safetensors").exists()  # no checkpoint of a diverged run


def test_training_data_generated_when_missing(tmp_path):
    recipe = load_recipe("tiny-shapes", ["stages.0.steps=2", "stages.0.warmup_steps=0", "stages.1.steps=1",
                                         "stages.1.warmup_steps=0", "data.synth.train_samples=64",
                                         "data.synth.samples_per_shard=32"])
    train(recipe, tmp_path / "run", data_dir=tmp_path / "data", device="cpu", workers=0)
    assert len(list((tmp_path / "data" / "shapes-train").glob("*.tar"))) == 2


def test_training_curves_in_tensorboard(synth_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = load_recipe("tiny-shapes", ["stages.0.steps=6", "stages.0.warmup_steps=0", "stages.1.steps=4",
                                         "stages.1.warmup_steps=0", "log_every=2"])
    train(recipe, tmp_path / "run", data_dir=synth_dir, device="cpu", workers=0)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [0, 2, 4, 5, 6, 8, 9]  # global steps across both stages (and each stage end)
    sizes = {e.step: e.value for e in events.Scalars("train/image_size")}
    assert sizes[0] == 16 and sizes[9] == 32


def test_training_curves_in_weights_and_biases_offline(synth_dir, tmp_path, monkeypatch):
    """The real wandb client, offline (no server): the run lives beside the checkpoint under the id we keep for
    --resume, and its record file holds the logged metric and the recipe."""
    pytest.importorskip("wandb", reason="wandb is an optional extra (in .[dev])")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    recipe = load_recipe("tiny-shapes", ["stages.0.steps=4", "stages.0.warmup_steps=0", "stages.1.steps=2",
                                         "stages.1.warmup_steps=0", "log_every=2", "tensorboard=false"])
    train(recipe, tmp_path / "run", data_dir=synth_dir, device="cpu", workers=0, wandb_project="reclip-test")
    run_id = (tmp_path / "run" / "wandb_run_id").read_text().strip()
    records = list((tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(records) == 1
    content = records[0].read_bytes()
    assert b"train/loss" in content and b"tiny-shapes" in content
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_activation_checkpointing_gives_the_same_gradients():
    from reclip_eval.models import CLIP, build_config

    def grads(checkpointing):
        torch.manual_seed(0)
        model = CLIP(build_config("tiny"))
        model.set_activation_checkpointing(checkpointing)
        generator = torch.Generator().manual_seed(1)
        pixels = torch.randn(4, 3, 32, 32, generator=generator)
        tokens = torch.randint(1, 49000, (4, 16), generator=generator)
        tokens[:, 0], tokens[:, 9], tokens[:, 10:] = 49406, 49407, 0
        contrastive_loss(*model(pixels, tokens)).backward()
        return {k: p.grad for k, p in model.named_parameters()}

    plain, recomputed = grads(False), grads(True)
    for name, grad in plain.items():
        torch.testing.assert_close(recomputed[name], grad)


def test_compiled_training_matches_eager(synth_dir, tmp_path):
    """torch.compile (inductor, on the CPU here) trains the same model: same losses within float noise."""
    overrides = ["stages.0.steps=3", "stages.0.warmup_steps=0", "stages.1.steps=2", "stages.1.warmup_steps=0",
                 "activation_checkpointing=true"]
    _, eager = train(load_recipe("tiny-shapes", overrides), tmp_path / "eager", data_dir=synth_dir, device="cpu",
                     workers=0)
    _, compiled = train(load_recipe("tiny-shapes", overrides + ["compile=true"]), tmp_path / "compiled",
                        data_dir=synth_dir, device="cpu", workers=0)
    for a, b in zip(eager, compiled, strict=True):
        assert b.losses == pytest.approx(a.losses, abs=1e-4)
