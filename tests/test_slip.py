"""SLIP's branch (train/slip.py): the SimCLR loss equals a direct computation and, over two processes with gathered
negatives, the one-process loss and gradients; the model runs the views through the head inside its forward; a run
trains with it, counts its compute and writes a checkpoint without the head; what cannot be exact is refused."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from reclip_eval.checkpoint import load_model
from reclip_eval.errors import ConfigError
from reclip_eval.models import CLIP, build_config
from reclip_eval.train.loop import train
from reclip_eval.train.recipe import SlipConfig, load_recipe
from reclip_eval.train.slip import attach_slip_head, count_slip_gmacs, simclr_head, simclr_loss

from .conftest import PowerCut, die_after_resume_points
from .contrastive_batch import join_group, local_part, mean_over_processes, run_processes

BATCH = 8


def _embeddings():
    generator = torch.Generator().manual_seed(11)
    return torch.randn(BATCH, 16, generator=generator), torch.randn(BATCH, 16, generator=generator)


def _direct_nt_xent(a, b, temperature):
    """SimCLR's loss written out: for view a of sample i, the positive is view b of i, the negatives every other
    sample's two views; the same from view b; averaged over samples and the two views."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    total = 0.0
    for anchor, other in ((a, b), (b, a)):
        for i in range(len(a)):
            positive = math.exp(float(anchor[i] @ other[i]) / temperature)
            negatives = sum(math.exp(float(anchor[i] @ other[j]) / temperature) +
                            math.exp(float(anchor[i] @ anchor[j]) / temperature) for j in range(len(a)) if j != i)
            total += -math.log(positive / (positive + negatives))
    return total / (2 * len(a))


def test_simclr_loss_equals_a_direct_computation():
    a, b = _embeddings()
    for temperature in (0.1, 0.5):
        assert simclr_loss(a, b, temperature).item() == pytest.approx(_direct_nt_xent(a, b, temperature), rel=1e-5)
    assert simclr_loss(a, a.clone(), 0.1) < simclr_loss(a, b, 0.1)  # identical views: an easier task


def _worker(rank, world, init_file, out_file):
    with join_group(rank, world, init_file):
        a, b = (x.requires_grad_() for x in _embeddings())
        part = local_part(rank, world)
        loss = simclr_loss(a[part], b[part], 0.1)
        loss.backward()
        # Each process's gradient reaches the rows of every process (gathered with gradients); summed over the
        # processes they are the full-batch gradient of the mean loss (DDP's averaging, done here by hand).
        grads = torch.stack([a.grad, b.grad])
        torch.distributed.all_reduce(grads)
        mean_loss = mean_over_processes(loss)
        if rank == 0:
            torch.save({"loss": mean_loss, "grads": grads / world}, out_file)


def test_two_process_loss_and_gradients_equal_one_process(tmp_path):
    a, b = (x.requires_grad_() for x in _embeddings())
    loss = simclr_loss(a, b, 0.1)
    loss.backward()
    result = run_processes(_worker, tmp_path)
    torch.testing.assert_close(result["loss"], loss.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(result["grads"], torch.stack([a.grad, b.grad]), rtol=1e-5, atol=1e-7)


def test_head_is_slips_mlp_and_runs_inside_the_forward():
    config = SlipConfig()
    head = simclr_head(64, config)
    assert [type(m).__name__ for m in head] == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU",
                                                "Linear"]
    assert (head.layer1.in_features, head.layer1.out_features, head.layer3.out_features) == (64, 4096, 256)
    torch.manual_seed(0)
    model = CLIP(build_config("tiny"))
    attach_slip_head(model, SlipConfig(mlp_dim=32, embed_dim=8))
    pixels = torch.randn(4, 3, 16, 16)
    tokens = torch.zeros(4, 8, dtype=torch.long)
    tokens[:, 0], tokens[:, 3] = 49406, 49407
    model.set_image_size(16)
    image, text, scale, view_a, view_b = model(pixels, tokens, views=(pixels.flip(-1), pixels))
    assert view_a.shape == view_b.shape == (4, 8)
    torch.testing.assert_close(view_b, model.slip_head(model.visual.features(pixels)))
    assert len(model(pixels, tokens)) == 3  # without views: the dual encoder's outputs only
    assert any(k.startswith("slip_head.") for k in model.state_dict())


def test_a_slip_run_counts_its_branch_and_saves_the_dual_encoder_only(synth_dir, tmp_path):
    recipe = load_recipe("tiny-shapes", ["stages.0.steps=3", "stages.0.warmup_steps=1", "stages.1.steps=2",
                                         "stages.1.warmup_steps=1", "slip.mlp_dim=64", "slip.embed_dim=16"])
    plain = load_recipe("tiny-shapes", ["stages.0.steps=3", "stages.0.warmup_steps=1", "stages.1.steps=2",
                                        "stages.1.warmup_steps=1"])
    _, reports = train(recipe, tmp_path / "run", data_dir=synth_dir, device="cpu", workers=0)
    config = build_config("tiny")
    extra = count_slip_gmacs(config, 16, recipe.slip)
    assert extra > 0
    from reclip_eval.models.flops import count_sample_compute

    assert reports[0].gmacs_per_sample == pytest.approx(count_sample_compute(config, 16, 16).total_gmacs + extra)
    assert all(math.isfinite(x) for r in reports for x in r.losses)
    for folder in (tmp_path / "run", tmp_path / "run" / "stages" / "lowres"):
        model = load_model(folder)  # strict: a slip_head tensor would be an unexpected key
        assert model.slip_head is None
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert record["stages"][0]["gmacs_per_sample"] > 0
    assert plain.slip is None and recipe.slip == SlipConfig(mlp_dim=64, embed_dim=16)


def test_micro_batches_and_the_jax_trainer_are_refused():
    with pytest.raises(ConfigError, match="SLIP's head normalises over the whole batch"):
        load_recipe("tiny-shapes", ["slip.weight=1.0", "stages.0.micro_batch_size=8"])
    from reclip_eval.jax_train.trainer import unsupported

    assert any("slip" in p for p in unsupported(load_recipe("tiny-shapes", ["slip.weight=1.0"])))


def test_a_slip_run_killed_after_a_resume_point_resumes_onto_the_uninterrupted_curve(synth_dir, tmp_path, monkeypatch):
    """Exact resume with everything a sibling recipe adds: the SLIP head (its weights, BatchNorm statistics and
    optimizer state live in the resume point, not in the checkpoint), the two augmented views and the CLIP image's
    augmentation (seeded per sample), and random text reduction (drawn per step in the main process), over two
    data workers."""
    from reclip_eval.train import loop

    overrides = ["stages.0.steps=6", "stages.0.warmup_steps=0", "stages.0.batch_size=8", "stages.1.steps=1",
                 "stages.1.warmup_steps=0", "stages.1.batch_size=8", "checkpoint_every=2", "keep_checkpoints=5",
                 "slip.mlp_dim=32", "slip.embed_dim=8", "stages.0.text_length=6", "stages.0.text_tokens={kind: random}",
                 "stages.0.augment=[{op: horizontal_flip}]"]
    _, whole = loop.train(load_recipe("tiny-shapes", overrides), tmp_path / "whole", data_dir=synth_dir, device="cpu",
                          workers=2)
    die_after_resume_points(monkeypatch, loop, 2)
    with pytest.raises(PowerCut):
        loop.train(load_recipe("tiny-shapes", overrides), tmp_path / "cut", data_dir=synth_dir, device="cpu", workers=2)
    monkeypatch.undo()
    _, resumed = loop.train(load_recipe("tiny-shapes", overrides), tmp_path / "cut", data_dir=synth_dir, device="cpu",
                            workers=2, resume=True)
    for a, b in zip(whole, resumed, strict=True):
        assert b.losses == pytest.approx(a.losses, abs=1e-5), a.name
    assert load_model(tmp_path / "cut").slip_head is None
