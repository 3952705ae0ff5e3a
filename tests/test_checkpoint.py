"""Checkpoint format: bit-exact round trips, resampling on purpose, every other mismatch an error."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

from reclip_eval.cards.render import render_card
from reclip_eval.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    file_sha256,
    load_checkpoint,
    load_model,
    read_config,
    resolve_checkpoint,
    save_checkpoint,
)
from reclip_eval.errors import CheckpointError
from reclip_eval.models import CLIP, build_config


def test_round_trip_is_bit_exact(tmp_path):
    model = CLIP(build_config("tiny")).eval()
    save_checkpoint(model, tmp_path / "ck")
    loaded = load_model(tmp_path / "ck")
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    assert loaded.config == model.config
    pixels = torch.randn(3, 3, 32, 32)
    assert torch.equal(model.encode_image(pixels), loaded.encode_image(pixels))


def test_save_with_card_and_load_checkpoint(tmp_path):
    model = CLIP(build_config("tiny")).eval()
    save_checkpoint(model, tmp_path / "hf", card=render_card(model_name="tiny", config=model.config))
    assert {p.name for p in (tmp_path / "hf").iterdir()} >= {CONFIG_NAME, WEIGHTS_NAME, "README.md"}
    config = json.loads((tmp_path / "hf" / CONFIG_NAME).read_text())
    assert config["architecture"] == "reclip-clip" and config["pos_embed_resample"]["mode"] == "bilinear"
    loaded = load_checkpoint(tmp_path / "hf")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True))


def test_load_at_another_image_size_resamples_pos_embed(tmp_path, caplog):
    model = CLIP(build_config("tiny"))
    save_checkpoint(model, tmp_path / "ck")
    with caplog.at_level("INFO"):
        big = load_checkpoint(tmp_path / "ck", image_size=64)
    assert big.config.vision.image_size == 64 and big.visual.pos_embed.shape == (1, 64, 32)
    assert "resampling visual.pos_embed 4x4 -> 8x8" in caplog.text
    expected = model.visual.pos_embed.detach().clone()
    model.set_image_size(64)
    torch.testing.assert_close(big.visual.pos_embed, model.visual.pos_embed)
    assert not torch.equal(expected, big.visual.pos_embed[:, :16])


def test_other_shape_mismatch_names_the_tensor(tmp_path):
    save_checkpoint(CLIP(build_config("tiny")), tmp_path / "ck")
    config = json.loads((tmp_path / "ck" / CONFIG_NAME).read_text())
    config["vision"]["width"] = 64
    config["vision"]["heads"] = 4
    (tmp_path / "ck" / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "ck")
    assert "visual.patch_embed.weight: checkpoint shape (32, 3, 8, 8), model expects (64, 3, 8, 8)" in str(e.value)


def test_missing_and_unexpected_tensors(tmp_path):
    save_checkpoint(CLIP(build_config("tiny")), tmp_path / "ck")
    state = load_file(tmp_path / "ck" / WEIGHTS_NAME)
    state.pop("logit_scale")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "ck" / WEIGHTS_NAME)
    with pytest.raises(CheckpointError, match="missing tensors: logit_scale") as e:
        load_model(tmp_path / "ck")
    assert "unexpected tensors: extra.weight" in str(e.value)


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    save_checkpoint(CLIP(build_config("tiny")), tmp_path / "ck")
    weights = tmp_path / "ck" / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable safetensors file.*truncated"):
        load_model(tmp_path / "ck")


def test_pickle_weights_are_never_loaded(tmp_path):
    model = CLIP(build_config("tiny"))
    save_checkpoint(model, tmp_path / "ck")
    (tmp_path / "ck" / WEIGHTS_NAME).unlink()
    torch.save(model.state_dict(), tmp_path / "ck" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled weights are never loaded"):
        load_model(tmp_path / "ck")
    # A pickle renamed to .safetensors is rejected by the safetensors parser, not unpickled.
    shutil.copy(tmp_path / "ck" / "pytorch_model.bin", tmp_path / "ck" / WEIGHTS_NAME)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(tmp_path / "ck")


def test_unknown_config_key_is_an_error(tmp_path):
    save_checkpoint(CLIP(build_config("tiny")), tmp_path / "ck")
    config = json.loads((tmp_path / "ck" / CONFIG_NAME).read_text())
    config["vision"]["pach_size"] = 8
    (tmp_path / "ck" / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="vision.pach_size: unknown key; did you mean 'patch_size'"):
        read_config(tmp_path / "ck")


def test_save_is_atomic_and_keeps_nothing_half_written(tmp_path, monkeypatch):
    model = CLIP(build_config("tiny"))
    save_checkpoint(model, tmp_path / "ck")
    before = file_sha256(tmp_path / "ck" / WEIGHTS_NAME)

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("reclip_eval.checkpoint.write_config", explode)
    with torch.no_grad():
        model.logit_scale.add_(1)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, tmp_path / "ck")
    assert file_sha256(tmp_path / "ck" / WEIGHTS_NAME) == before  # old checkpoint intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp dirs left behind


def _lay_out_hf_cache(hub_cache, repo_id, files, commit="0123456789abcdef0123456789abcdef01234567"):
    """Write a cache the way huggingface_hub lays it out: blobs by hash, snapshots/<commit>/ links, refs/main."""
    import hashlib

    repo_dir = hub_cache / f"models--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo_dir / "blobs").mkdir()
    for path in files:
        data = path.read_bytes()
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / path.name)
    return commit


def test_hub_repo_id_resolves_from_offline_cache(tmp_path):
    model = CLIP(build_config("tiny")).eval()
    save_checkpoint(model, tmp_path / "ck")
    hf_home = tmp_path / "hf_home"
    commit = _lay_out_hf_cache(hf_home / "hub", "someorg/tiny-clip",
                               [tmp_path / "ck" / CONFIG_NAME, tmp_path / "ck" / WEIGHTS_NAME])
    expected = model.encode_image(torch.ones(1, 3, 32, 32)).detach()
    torch.save(expected, tmp_path / "expected.pt")
    # HF_HUB_OFFLINE and HF_HOME are read when huggingface_hub is imported: use a fresh process.
    script = textwrap.dedent(f"""
        import torch
        from reclip_eval.checkpoint import load_checkpoint, resolve_checkpoint
        source = resolve_checkpoint("someorg/tiny-clip")
        assert source.commit == "{commit}", source
        model = load_checkpoint("someorg/tiny-clip")
        got = model.encode_image(torch.ones(1, 3, 32, 32))
        assert torch.equal(got, torch.load(r"{tmp_path / 'expected.pt'}")), "embeddings differ"
        try:
            resolve_checkpoint("someorg/absent")
        except Exception as e:
            print("ERR", e)
    """)
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ERR hf-hub:someorg/absent: not in the Hugging Face cache" in out.stdout
    assert "offline (HF_HUB_OFFLINE=1)" in out.stdout


def test_not_a_directory_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        resolve_checkpoint(str(tmp_path / "nope" / "x"))


def test_load_at_a_non_square_size_resamples_to_that_grid(tmp_path, caplog):
    """A model trained at 32x32 (patch 16: a 2x2 grid) loaded at (32, 48): a 2x3 grid, by the one resampler."""
    from reclip_eval.models.pos_embed import resample_pos_embed

    model = CLIP(build_config("tiny", {"vision": {"patch_size": 16}})).eval()
    save_checkpoint(model, tmp_path / "ck")
    with caplog.at_level("INFO"):
        wide = load_model(tmp_path / "ck", image_size=(32, 48))
    assert wide.config.vision.image_size == (32, 48) and wide.config.vision.grid_hw == (2, 3)
    assert "resampling visual.pos_embed 2x2 -> 2x3" in caplog.text
    expected = resample_pos_embed(model.visual.pos_embed.detach(), (2, 2), (2, 3))
    assert torch.equal(wide.visual.pos_embed, expected)
    assert wide.encode_image(torch.randn(2, 3, 32, 48)).shape == (2, 32)
    with pytest.raises(CheckpointError, match=r"image size \[32, 50\]: width 50 is not a multiple of the model's "
                                              r"patch size 16; use 48 or 64"):
        load_model(tmp_path / "ck", image_size=(32, 50))


def test_non_square_config_round_trips_and_square_stays_an_int(tmp_path):
    model = CLIP(build_config("tiny", {"vision": {"image_size": [32, 48]}}))
    save_checkpoint(model, tmp_path / "wide")
    assert json.loads((tmp_path / "wide" / CONFIG_NAME).read_text())["vision"]["image_size"] == [32, 48]
    assert load_model(tmp_path / "wide").config == model.config
    square = build_config("tiny", {"vision": {"image_size": [32, 32]}})
    assert square.vision.image_size == 32 and square == build_config("tiny")


def test_loading_draws_no_random_initialisation(tmp_path):
    """The model is built on the meta device and the file's tensors assigned: the global RNG is not touched, and
    the result has real float32 parameters (cast from float16) that train."""
    model = CLIP(build_config("tiny")).eval()
    save_checkpoint(model, tmp_path / "ck", dtype=torch.float16)
    rng = torch.random.get_rng_state()
    loaded = load_model(tmp_path / "ck")
    assert torch.equal(rng, torch.random.get_rng_state())
    for name, p in loaded.named_parameters():
        assert isinstance(p, torch.nn.Parameter) and p.requires_grad and p.device.type == "cpu", name
        assert p.dtype == torch.float32, name
        assert torch.equal(p, model.state_dict()[name].half().float()), name
    same = load_model(tmp_path / "ck", init="random")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), same.state_dict().values(), strict=True))


def test_a_tensor_no_checkpoint_holds_is_refused_after_a_meta_load(tmp_path):
    """A buffer that is not saved would stay on the meta device: refused by name rather than failing later."""
    from reclip_eval.checkpoint import load_state_into, read_weights

    model = CLIP(build_config("tiny"))
    save_checkpoint(model, tmp_path / "ck")
    with torch.device("meta"):
        target = CLIP(model.config)
    target.text.register_buffer("causal_mask", torch.empty(16, 16, device="meta"), persistent=False)
    with pytest.raises(CheckpointError, match="text.causal_mask not in the checkpoint"):
        load_state_into(target, read_weights(tmp_path / "ck" / WEIGHTS_NAME), model.config, source="ck", assign=True)
