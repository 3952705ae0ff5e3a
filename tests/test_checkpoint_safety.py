"""Checkpoints never load as something else: one fingerprint per set of weights, every config key required, broken
weights and impossible image sizes refused, a file given as --model named as what it is (issue #12)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from reclip_eval.checkpoint import (
    CONFIG_NAME,
    VERSION_1_IMPLIED,
    WEIGHTS_NAME,
    file_sha256,
    load_model,
    read_config,
    save_checkpoint,
)
from reclip_eval.errors import CheckpointError
from reclip_eval.models import CLIP, build_config
from reclip_eval.zoo.resolve import load_adapter

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
# safetensors wrote its two metadata entries in an order that changed from save to save (about 4 saves in 10 in
# one order); with this many saves, identical files by chance are below one in a thousand.
SAVES = 16


def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(checkpoint, tmp_path / "ckpt"))


def _edit_config(directory: Path, dotted: str) -> None:
    config = json.loads((directory / CONFIG_NAME).read_text())
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    del node[leaf]
    (directory / CONFIG_NAME).write_text(json.dumps(config))


def test_two_saves_of_one_model_are_byte_identical(tmp_path):
    model = CLIP(build_config("tiny"))
    digests = {file_sha256(save_checkpoint(model, tmp_path / f"save{i}") / WEIGHTS_NAME) for i in range(SAVES)}
    assert len(digests) == 1
    # The fingerprint follows the tensors: one changed value is another file.
    with torch.no_grad():
        model.logit_scale.add_(1)
    assert file_sha256(save_checkpoint(model, tmp_path / "changed") / WEIGHTS_NAME) not in digests


@pytest.mark.parametrize("key", ["preprocess", "text.pool", "vision.layers", "pos_embed_resample.mode",
                                 "max_logit_scale"])
def test_a_missing_config_key_is_named_with_the_file_before_tensors_are_read(tiny_checkpoint, tmp_path, key):
    directory = _copy(tiny_checkpoint, tmp_path)
    _edit_config(directory, key)
    (directory / WEIGHTS_NAME).write_bytes(b"not read")  # the config is refused before the weights are opened
    with pytest.raises(CheckpointError) as info:
        load_model(directory)
    message = str(info.value)
    assert f"{directory / CONFIG_NAME}: missing key {key} " in message
    assert "tensors" not in message


def test_all_missing_keys_are_named_at_once(tiny_checkpoint, tmp_path):
    directory = _copy(tiny_checkpoint, tmp_path)
    _edit_config(directory, "vision.layers")
    _edit_config(directory, "text.pool")
    with pytest.raises(CheckpointError, match="missing keys vision.layers, text.pool"):
        read_config(directory)


def test_config_written_by_296e183_still_loads(tmp_path):
    """Format 1, as main wrote it at 296e183 (tests/fixtures), loads unchanged; today's writer writes format 2, the
    same keys plus the architecture options version 1 had only one value for (issue 16)."""
    fixture = FIXTURES / "config_written_by_296e183_tiny.json"
    model = CLIP(build_config("tiny"))
    directory = save_checkpoint(model, tmp_path / "new")
    version_1 = json.loads(fixture.read_text())
    expected = {**version_1, "format_version": 2,
                **{tower: {**version_1[tower], **implied} for tower, implied in VERSION_1_IMPLIED.items()}}
    assert json.loads((directory / CONFIG_NAME).read_text()) == expected
    shutil.copy(fixture, directory / CONFIG_NAME)
    loaded = load_model(directory)
    assert loaded.config == build_config("tiny")
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_bundled_demo_keeps_loading_with_its_recorded_fingerprint():
    adapter = load_adapter("reclip-demo")
    recorded = json.loads((REPO / "leaderboards/results/reclip-demo__shapes-zeroshot.json").read_text())
    assert adapter.describe()["weights"]["sha256"] == recorded["model"]["weights"]["sha256"]


def test_weights_holding_nan_or_inf_are_refused_naming_tensors_and_file(tiny_checkpoint, tmp_path):
    directory = _copy(tiny_checkpoint, tmp_path)
    state = load_file(str(directory / WEIGHTS_NAME))
    state["visual.proj.weight"][0, 0] = float("nan")
    state["text.token_embed.weight"][3, 1] = float("inf")
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as info:
        load_adapter(str(directory))
    message = str(info.value)
    assert str(directory / WEIGHTS_NAME) in message and "NaN or inf" in message
    assert "text.token_embed.weight" in message and "visual.proj.weight" in message


def test_image_size_not_a_multiple_of_the_patch_is_refused_at_load(tiny_checkpoint):
    patch = build_config("tiny").vision.patch_size
    size = 7 * patch + patch // 2
    with pytest.raises(CheckpointError) as info:
        load_adapter(str(tiny_checkpoint), image_size=size)
    assert f"image size {size} is not a multiple of the model's patch size {patch}" in str(info.value)
    assert f"use {7 * patch} or {8 * patch}" in str(info.value)


def test_a_file_given_as_model_is_not_a_checkpoint_directory(tiny_checkpoint):
    weights = tiny_checkpoint / WEIGHTS_NAME
    with pytest.raises(CheckpointError) as info:
        load_adapter(str(weights))
    message = str(info.value)
    assert f"{weights}: a file, not a checkpoint directory" in message
    assert f"--model openclip:ARCH --checkpoint {weights}" in message  # a safetensors file: how to pass it


def test_version_1_implies_exactly_the_defaults_and_version_2_states_everything(tiny_checkpoint, tmp_path):
    """What a version-1 file is filled in with is the architecture it was written by (today's defaults); a
    version-1 file naming a version-2 key is refused, and a version-2 file lacking one is named."""
    defaults = build_config("tiny")
    for tower, implied in VERSION_1_IMPLIED.items():
        assert implied == {key: getattr(getattr(defaults, tower), key) for key in implied}
    directory = _copy(tiny_checkpoint, tmp_path)
    config = json.loads((directory / CONFIG_NAME).read_text())
    assert config["format_version"] == 2
    del config["vision"]["norm_after_pool"]
    (directory / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"missing key vision\.norm_after_pool \(every key of format_version 2"):
        read_config(directory)
    config["format_version"] = 1
    (directory / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"vision\.class_token is not a format_version 1 key"):
        read_config(directory)
