"""Per-stage training augmentations (reclip_eval/data/augment.py): specs checked when parsed, the empty list equal to
the evaluation transform, and randomness a pure function of the per-sample seed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from reclip_eval.data.augment import (
    OP_KINDS,
    PRESETS,
    AugmentOp,
    describe_augment,
    parse_augment,
    train_image_transform,
)
from reclip_eval.data.transforms import image_transform
from reclip_eval.errors import ConfigError
from reclip_eval.models.config import PreprocessConfig

PRE = PreprocessConfig()
SIZE = 32

ONE_OF_EACH = {
    "random_resized_crop": {"scale": [0.4, 1.0], "ratio": [0.75, 1.3333]},
    "horizontal_flip": {"p": 0.5},
    "color_jitter": {"brightness": 0.32, "contrast": 0.32, "saturation": 0.32, "hue": 0.08, "p": 0.8},
    "grayscale": {"p": 0.2},
    "gaussian_blur": {"sigma": [0.1, 2.0], "p": 0.5},
    "randaugment": {"num_ops": 2, "magnitude": 9},
}


def picture(height: int = 40, width: int = 48, mode: str = "RGB", seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def unnormalise(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(PRE.std).view(3, 1, 1) + torch.tensor(PRE.mean).view(3, 1, 1)


def test_option_fields_match_the_registered_keys():
    options = {f.name for f in dataclasses.fields(AugmentOp)} - {"op"}
    assert options == set().union(*(kind.defaults for kind in OP_KINDS.values()))
    assert set(ONE_OF_EACH) == set(OP_KINDS.names())


@pytest.mark.parametrize("preprocess", [PRE, PreprocessConfig(interpolation="bilinear", resize="squash")])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_no_ops_is_the_evaluation_transform_bit_for_bit(preprocess, mode):
    image = picture(mode=mode)
    expected = image_transform(SIZE, preprocess)(image)
    for seed in (0, 7):
        assert torch.equal(train_image_transform(SIZE, preprocess, ())(image, seed), expected)


@pytest.mark.parametrize("name", sorted(ONE_OF_EACH))
def test_each_op_builds_and_keeps_the_shape(name):
    ops = parse_augment([{"op": name, **ONE_OF_EACH[name]}], "test")
    out = train_image_transform(SIZE, PRE, ops)(picture(), 3)
    assert out.shape == (3, SIZE, SIZE) and out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build(name):
    out = train_image_transform(SIZE, PRE, PRESETS[name])(picture(), 1)
    assert out.shape == (3, SIZE, SIZE)


def test_same_seed_same_tensor_other_seed_other_tensor_and_global_rng_untouched():
    transform = train_image_transform(SIZE, PRE, PRESETS["simclr"])
    image = picture()
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    first, again, other = transform(image, 5), transform(image, 5), transform(image, 6)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    # the same seed gives the same tensor whatever the global RNG did before (a resumed loader decodes fewer images)
    torch.rand(1000)
    assert torch.equal(transform(image, 5), first)


def test_full_area_square_crop_equals_plain_resize():
    image = picture(48, 48)  # square, larger than SIZE, so a resize really happens
    ops = parse_augment([{"op": "random_resized_crop", "scale": [1, 1], "ratio": [1, 1]}], "test")
    got = train_image_transform(SIZE, PRE, ops)(image, 0)
    torch.testing.assert_close(got, image_transform(SIZE, PRE)(image), rtol=0, atol=1e-6)


def test_crop_uses_the_preprocess_interpolation():
    image = picture(48, 48)
    ops = parse_augment([{"op": "random_resized_crop", "scale": [1, 1], "ratio": [1, 1]}], "test")
    bicubic = train_image_transform(SIZE, PRE, ops)(image, 0)
    bilinear = train_image_transform(SIZE, PreprocessConfig(interpolation="bilinear"), ops)(image, 0)
    assert not torch.allclose(bicubic, bilinear, atol=1e-3)


def test_grayscale_always_gives_three_equal_channels():
    ops = parse_augment([{"op": "grayscale", "p": 1}], "test")
    pixels = unnormalise(train_image_transform(SIZE, PRE, ops)(picture(), 0))
    torch.testing.assert_close(pixels[0], pixels[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(pixels[0], pixels[2], rtol=0, atol=1e-5)
    assert pixels[0].std() > 0.01  # still an image, not a constant


def test_flip_always_mirrors_the_unaugmented_tensor():
    image = picture()
    ops = parse_augment([{"op": "horizontal_flip", "p": 1.0}], "test")
    flipped = train_image_transform(SIZE, PRE, ops)(image, 0)
    assert torch.equal(flipped, torch.flip(image_transform(SIZE, PRE)(image), dims=[-1]))


def test_crop_applies_first_wherever_it_is_listed():
    image = picture()
    crop = {"op": "random_resized_crop", "scale": [0.4, 1.0]}
    flip = {"op": "horizontal_flip", "p": 1.0}
    crop_first = train_image_transform(SIZE, PRE, parse_augment([crop, flip], "test"))(image, 9)
    crop_last = train_image_transform(SIZE, PRE, parse_augment([flip, crop], "test"))(image, 9)
    assert torch.equal(crop_first, crop_last)


@pytest.mark.parametrize(("raw", "where", "says"), [
    ({"op": "horizontal_flp"}, "augment[0].op", "horizontal_flip"),
    ({"op": "grayscale", "scale": [0.4, 1.0]}, "augment[0].scale", "grayscale takes no 'scale'"),
    ({"op": "grayscale", "prob": 0.2}, "augment[0].prob", "unknown key"),
    ({"op": "horizontal_flip", "p": 1.5}, "augment[0].p", "[0, 1]"),
    ({"op": "random_resized_crop", "scale": [0.8, 0.4]}, "augment[0].scale", "0 < a <= b <= 1"),
    ({"op": "color_jitter", "brightness": -0.1}, "augment[0].brightness", ">= 0"),
    ({"op": "color_jitter", "hue": 0.6}, "augment[0].hue", "[0, 0.5]"),
    ({"op": "randaugment", "magnitude": 31}, "augment[0].magnitude", "[0, 30]"),
    ({"scale": [0.4, 1.0]}, "augment[0].op", "required"),
])
def test_bad_specs_name_the_key(raw, where, says):
    with pytest.raises(ConfigError) as caught:
        parse_augment([raw], "stage.yaml")
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert problem.startswith(where + ":") and says in problem and "\n" not in problem
    assert "stage.yaml" in str(caught.value)


def test_two_cropping_ops_are_refused():
    with pytest.raises(ConfigError, match="at most one cropping op"):
        parse_augment([{"op": "random_resized_crop"}, {"op": "random_resized_crop"}], "test")
    with pytest.raises(ValueError, match="at most one cropping op"):
        train_image_transform(SIZE, PRE, PRESETS["clipa"] + PRESETS["simclr"])


def test_ops_built_in_code_are_checked_too():
    with pytest.raises(ValueError, match="p: must be in"):
        AugmentOp("grayscale", p=2.0)


def test_left_out_keys_take_the_op_defaults():
    (flip,) = parse_augment([{"op": "horizontal_flip"}], "test")
    assert flip == AugmentOp("horizontal_flip", p=0.5)
    assert describe_augment([flip]) == [{"op": "horizontal_flip", "p": 0.5}]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_the_record(name):
    record = describe_augment(PRESETS[name])
    assert all(isinstance(value, (str, int, float, list)) for op in record for value in op.values())
    assert parse_augment(record, "record") == PRESETS[name]


def test_clip_da_is_the_clipa_assumption():
    assert PRESETS["clip_da"] == PRESETS["clipa"]


def test_a_stage_augments_its_stream_the_same_after_a_resume(synth_dir):
    """Each sample's augmentation is drawn from its place in the stream, so the stream that skips two batches (as a
    resumed run does, without decoding them) hands out the same augmented pixels as the whole stream."""
    from reclip_eval.data.shards import list_shards, train_batches
    from reclip_eval.models.tokenizer import ClipTokenizer

    shards = list_shards("shapes-train", synth_dir)
    augmented = train_image_transform(16, PRE, PRESETS["clipa"])

    def take(transform, skip, count, augment):
        batches = train_batches(shards, transform, ClipTokenizer(16), batch_size=4, seed=0, shuffle_buffer=20,
                                workers=0, skip_batches=skip, augment=augment)
        return [next(batches)[0] for _ in range(count)]

    whole, resumed = take(augmented, 0, 4, True), take(augmented, 2, 2, True)
    assert torch.equal(resumed[0], whole[2]) and torch.equal(resumed[1], whole[3])
    plain = take(image_transform(16, PRE), 0, 4, False)
    assert not torch.equal(plain[2], whole[2])  # the same samples, augmented


def test_a_recipe_names_a_preset_and_records_its_ops():
    from reclip_eval.train.recipe import load_recipe, parse_recipe_yaml, recipe_to_yaml

    recipe = load_recipe("tiny-shapes", ["stages.0.augment=clipa", "stages.1.augment=[]"])
    assert recipe.stages[0].augment == PRESETS["clipa"] and recipe.stages[1].augment == ()
    assert parse_recipe_yaml(recipe_to_yaml(recipe), "stored") == recipe
    with pytest.raises(ConfigError, match=r"stages\[0\]\.augment: unknown preset 'clipaa'"):
        load_recipe("tiny-shapes", ["stages.0.augment=clipaa"])


def test_loading_a_recipe_does_not_import_torchvision():
    """`reclip-eval recipes` / `flops` parse every recipe's `augment` list: the parser must not pay for torchvision,
    which only a built pipeline needs."""
    import subprocess
    import sys

    code = ("import sys; from reclip_eval.train.recipe import load_recipe; load_recipe('clip-da-b16'); "
            "print('torchvision' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
