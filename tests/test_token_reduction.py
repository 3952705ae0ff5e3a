"""Image token reduction (models/token_reduction.py): counts, which tokens survive for a fixed generator, the flax
mirror, the recipe spec and the upgrade of recipes that still say `mask_ratio`."""

import jax
import numpy as np
import pytest
import torch
import yaml

from reclip_eval.config import to_dict
from reclip_eval.errors import ConfigError
from reclip_eval.flax_models.clip import select_image_tokens as flax_select
from reclip_eval.models.flops import count_sample_compute
from reclip_eval.models.presets import build_config
from reclip_eval.models.token_reduction import ImageTokens, block_shape, select_image_tokens, step_generator
from reclip_eval.train.recipe import load_recipe, parse_recipe_yaml, recipe_to_yaml, written_by


def _grid_tokens(batch=3, rows=4, cols=4):
    """Token t of sample b carries the value t in its only channel: kept indices can be read off."""
    return torch.arange(rows * cols, dtype=torch.float32).repeat(batch, 1).unsqueeze(-1)


def _kept(spec, rows=4, cols=4, seed=0):
    out = select_image_tokens(_grid_tokens(rows=rows, cols=cols), spec, (rows, cols), step_generator("cpu", seed))
    return out[..., 0].long().tolist()


def test_random_keeps_distinct_tokens_per_sample_and_follows_the_generator():
    kept = _kept(ImageTokens("random", keep=5))
    assert all(len(set(k)) == 5 and set(k) <= set(range(16)) for k in kept)
    assert kept[0] != kept[1] or kept[1] != kept[2]  # drawn per sample
    assert _kept(ImageTokens("random", keep=5)) == kept  # the same generator, the same tokens
    assert _kept(ImageTokens("random", keep=5), seed=1) != kept
    assert ImageTokens("random", ratio=0.75).kept((8, 8)) == 16  # FLIP's K = round(N (1 - r))


def test_grid_keeps_one_patch_per_window():
    for sample in _kept(ImageTokens("grid")):
        cells = sorted(((t // 4) // 2, (t % 4) // 2) for t in sample)
        assert cells == [(0, 0), (0, 1), (1, 0), (1, 1)]  # each 2x2 cell once, in row-major order of cells


def test_block_keeps_one_contiguous_rectangle():
    assert block_shape(6, (4, 4)) == (2, 3) and block_shape(16, (8, 8)) == (4, 4) and block_shape(7, (4, 4)) is None
    for sample in _kept(ImageTokens("block", keep=6)):
        rows, cols = sorted({t // 4 for t in sample}), sorted({t % 4 for t in sample})
        assert len(rows) == 2 and len(cols) == 3
        assert rows == list(range(rows[0], rows[0] + 2)) and cols == list(range(cols[0], cols[0] + 3))
        assert sample == [r * 4 + c for r in rows for c in cols]


def test_resize_keeps_everything_and_masking_needs_a_generator():
    x = _grid_tokens()
    assert select_image_tokens(x, ImageTokens(), (4, 4), None) is x
    with pytest.raises(ValueError, match="explicit torch.Generator"):
        select_image_tokens(x, ImageTokens("random", keep=2), (4, 4), None)


@pytest.mark.parametrize("spec", [ImageTokens("random", keep=5), ImageTokens("grid"), ImageTokens("block", keep=6)])
def test_flax_keeps_what_the_spec_says(spec):
    x = np.tile(np.arange(16, dtype=np.float32), (2, 1))[..., None]  # token t holds t in every sample
    kept = np.asarray(flax_select(jax.numpy.asarray(x), spec, (4, 4), jax.random.key(0)))[..., 0].astype(int)
    assert kept.shape == (2, spec.kept((4, 4)))
    for sample in kept.tolist():
        assert len(set(sample)) == len(sample)
        if spec.kind == "grid":
            assert sorted(((t // 4) // 2, (t % 4) // 2) for t in sample) == [(0, 0), (0, 1), (1, 0), (1, 1)]
        if spec.kind == "block":
            rows, cols = sorted({t // 4 for t in sample}), sorted({t % 4 for t in sample})
            assert sample == [r * 4 + c for r in rows for c in cols] and (len(rows), len(cols)) == (2, 3)


@pytest.mark.parametrize("bad, message", [
    ({"kind": "random"}, "exactly one of keep"),
    ({"kind": "random", "keep": 4, "ratio": 0.5}, "exactly one of keep"),
    ({"kind": "resize", "keep": 4}, "keep and ratio are for random and block"),
    ({"kind": "random", "ratio": 1.0}, r"must be in \[0, 1\)"),
    ({"kind": "random", "keep": 999}, "keep 999 exceeds the 16 patches"),
    ({"kind": "block", "keep": 7}, "no rectangle of 7 patches"),
    ({"kind": "grid", "window": 3}, "divisible by it"),
])
def test_bad_specs_are_named_before_training(bad, message):
    overrides = [f"stages.0.image_tokens.{k}={v}" for k, v in bad.items()]
    with pytest.raises(ConfigError, match=message) as error:
        load_recipe("tiny-shapes", overrides)
    assert "image_tokens" in str(error.value)


def test_masked_stage_counts_what_it_computes():
    config = build_config("vit-l16-text12x1024")
    full = count_sample_compute(config, 224, 16)
    masked = count_sample_compute(config, 224, 16, ImageTokens("random", keep=16))
    resized = count_sample_compute(config, 64, 16)
    prefix = config.vision.num_prefix_tokens  # a class token, if the tower has one, is never masked
    assert (full.image_tokens, masked.image_tokens, resized.image_tokens) == (196 + prefix, 16 + prefix, 16 + prefix)
    assert 0 <= masked.image_gmacs - resized.image_gmacs < 0.15  # only the 196-patch embedding is extra
    grid = count_sample_compute(config, 224, 16, ImageTokens("grid"))
    assert grid.image_tokens == 49 + prefix and masked.image_gmacs < grid.image_gmacs < full.image_gmacs


def test_recipes_that_say_mask_ratio_still_load_and_resume():
    """A recipe (or a resume point's stored recipe) from before image_tokens: `mask_ratio: r` is random masking
    at ratio r, 0 is none; it resolves to the same recipe as the new spelling."""
    new = load_recipe("tiny-shapes", ["stages.0.image_tokens.kind=random", "stages.0.image_tokens.ratio=0.5",
                                      "stages.1.image_tokens.kind=resize"])
    old = to_dict(new)
    for stage, ratio in zip(old["stages"], (0.5, 0.0), strict=True):
        del stage["image_tokens"]
        stage["mask_ratio"] = ratio
    old_text = yaml.safe_dump(old, sort_keys=False)
    assert "mask_ratio: 0.5" in old_text and "image_tokens" not in old_text
    assert recipe_to_yaml(parse_recipe_yaml(old_text, "old.yaml")) == recipe_to_yaml(new)
    assert written_by(old_text, new, "resume/point")  # a run started before the change resumes
    assert not written_by(old_text.replace("mask_ratio: 0.5", "mask_ratio: 0.25"), new, "resume/point")
    with pytest.raises(ConfigError, match="replaced by image_tokens"):
        load_recipe("tiny-shapes", ["stages.0.mask_ratio=0.5", "stages.0.image_tokens.kind=resize"])


def test_a_stage_that_states_image_tokens_replaces_the_previous_spec_whole():
    recipe = load_recipe("mini-mask-32")
    assert [s.image_tokens for s in recipe.stages] == [ImageTokens("random", ratio=0.75), ImageTokens()]
    assert recipe.stages[0].image_tokens.kept((8, 8)) == 16  # as many as 32 px has: the Table 10 pairing
