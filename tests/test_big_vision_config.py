"""big_vision / CLIPA imports read the model's own config (issue 34 items 1 and 3): what the weights cannot tell is
stated (`--model-config`, `model_config=`) or refused naming the key, never guessed; MAP-head pooling, image pools
tok / gap / "0" and text pools last / first / mean (big_vision's, padding included) / CLIPA's tok and gap compute
on the torch model as on the flax twin, and the MAP head as big_vision's MAPHead math."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from reclip_eval.checkpoint import CONFIG_NAME, load_model, read_config, save_checkpoint
from reclip_eval.cli.main import main
from reclip_eval.data.synth.export import synthesize
from reclip_eval.errors import CheckpointError, ConfigError
from reclip_eval.eval.results_schema import validate_results
from reclip_eval.eval.tasks import load_task
from reclip_eval.flax_models.big_vision_npz import import_two_towers
from reclip_eval.flax_models.convert import flax_to_torch, unflatten
from reclip_eval.models import CLIP
from reclip_eval.models.presets import build_config
from reclip_eval.zoo.resolve import load_adapter

from .test_big_vision_import import (
    FLAX_NUMERICS,
    HEADS,
    WIDTH,
    _as_clipa_tree,
    _config,
    _embed_flax,
    _inputs,
    _random_params,
)

BV = {"head_bias": True, **FLAX_NUMERICS}  # big_vision's heads have biases; CLIPA's none, and no patch bias
CLIPA_IMAGE = {"class_token": True, "patch_bias": False, **FLAX_NUMERICS}
# (id, layout, our config, big_vision's model config of it): each new pool, on the codebase that has it.
CASES = [
    ("big_vision map + SigLIP b", "big_vision", _config({"pool": "map", **BV}, {"pool": "last", **BV}),
     {"image": {"pool_type": "map"}, "text": {"pool_type": "last"}, "bias_init": -10.0}),
    ("big_vision 0, text first", "big_vision", _config({"pool": "first", **BV}, {"pool": "first", **BV}),
     {"image": {"pool_type": "0"}, "text": {"pool_type": "first"}}),
    ("big_vision gap, text mean", "big_vision", _config(BV, {"pool": "mean_all", **BV}),
     {"image": {"pool_type": "gap", "posemb": "learn"}, "text": {"pool_type": "mean"}}),
    ("big_vision tok, text max", "big_vision", _config({"pool": "cls", "class_token_position": False, **BV},
                                                       {"pool": "max_all", **BV}),
     {"image": {"pool_type": "tok"}, "text": {"pool_type": "max"}}),
    ("big_vision map, text map", "big_vision", _config({"pool": "map", **BV}, {"pool": "map", **BV}),
     {"image": {"pool_type": "map"}, "text": {"pool_type": "map"}}),
    ("CLIPA 0, text tok", "clipa", _config({"pool": "first", "final_norm": False, **CLIPA_IMAGE},
                                           {"pool": "first", **FLAX_NUMERICS}),
     {"image": {"pool_type": "0"}, "text": {"pool_type": "tok"}}),
    ("CLIPA map, text gap", "clipa", _config({"pool": "map", "final_norm": False, **CLIPA_IMAGE},
                                             {"pool": "mean_after_first", **FLAX_NUMERICS}),
     {"image": {"pool_type": "map"}, "text": {"pool_type": "gap"}}),
    ("CLIPA tok", "clipa", _config({"pool": "cls", "norm_after_pool": True, **CLIPA_IMAGE},
                                   {"pool": "last", **FLAX_NUMERICS}),
     {"image": {"pool_type": "tok"}, "text": {"pool_type": "last"}}),
]
IDS = [case[0] for case in CASES]
BY_ID = {case[0]: case for case in CASES}


def _torch_model(config, flat):
    model = CLIP(config).eval()
    state = flax_to_torch(unflatten(flat), config)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    return model


def _write_tree(tmp_path, layout, config, stated, seed=0):
    flat = _random_params(config, seed)
    written = _as_clipa_tree(flat) if layout == "clipa" else dict(flat)
    if stated.get("bias_init") is not None:
        written["b"] = np.array([-7.5], np.float32)
    path = tmp_path / f"{layout}.npz"
    np.savez(path, **written)
    return path, flat


@pytest.mark.parametrize(("name", "layout", "config", "stated"), CASES, ids=IDS)
def test_torch_forward_equals_the_flax_twin_for_each_new_pool(name, layout, config, stated):
    flat = _random_params(config)
    model = _torch_model(config, flat)
    pixels, tokens = _inputs()
    with torch.no_grad():
        image, text = model.encode_image(pixels).numpy(), model.encode_text(tokens).numpy()
    want_image, want_text = _embed_flax(config, flat, pixels.numpy(), tokens.numpy())
    np.testing.assert_allclose(image, want_image, rtol=0, atol=1e-5)
    np.testing.assert_allclose(text, want_text, rtol=0, atol=1e-5)
    if config.text.pool != "last":  # the pool matters: the same weights pooled at the last position differ
        last = dataclasses.replace(config, text=dataclasses.replace(config.text, pool="last"))
        assert np.abs(text - _embed_flax(last, flat, pixels.numpy(), tokens.numpy())[1]).max() > 1e-2


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps) * scale + bias


def test_map_head_is_big_vision_maphead_computed_independently():
    """big_vision's MAPHead (models/vit.py) written out in numpy from the stored kernels: probe tiled over the batch,
    flax MultiHeadDotProductAttention(probe, x) with 1/sqrt(head_dim) scaling, then y + MlpBlock(LayerNorm(y))."""
    config = CASES[0][2]
    flat = _random_params(config, seed=4)
    model = _torch_model(config, flat)
    tokens = np.random.default_rng(0).normal(size=(3, 17, WIDTH)).astype(np.float32)
    with torch.no_grad():
        got = model.visual.map_head(torch.from_numpy(tokens)).numpy()
    p = {k.removeprefix("img/MAPHead_0/"): v.astype(np.float64) for k, v in flat.items() if "MAPHead_0" in k}
    attention = "MultiHeadDotProductAttention_0"
    probe = np.tile(p["probe"], (len(tokens), 1, 1))
    project = lambda x, name: np.einsum("bld,dhk->blhk", x, p[f"{attention}/{name}/kernel"]) + \
        p[f"{attention}/{name}/bias"]  # noqa: E731
    q, k, v = project(probe, "query"), project(tokens.astype(np.float64), "key"), project(tokens, "value")
    logits = np.einsum("bqhk,bnhk->bhqn", q / math.sqrt(WIDTH // HEADS), k)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    y = np.einsum("bhqn,bnhk->bqhk", weights, v)
    y = np.einsum("bqhk,hkd->bqd", y, p[f"{attention}/out/kernel"]) + p[f"{attention}/out/bias"]
    h = _layer_norm(y, p["LayerNorm_0/scale"], p["LayerNorm_0/bias"])
    h = _gelu_tanh(h @ p["MlpBlock_0/Dense_0/kernel"] + p["MlpBlock_0/Dense_0/bias"])
    want = (y + h @ p["MlpBlock_0/Dense_1/kernel"] + p["MlpBlock_0/Dense_1/bias"])[:, 0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("name", "layout", "config", "stated"), CASES, ids=IDS)
def test_each_pool_imports_with_its_config_on_both_backends_and_is_recorded(name, layout, config, stated, tmp_path):
    path, flat = _write_tree(tmp_path, layout, config, stated)
    adapter = load_adapter(f"big_vision:{path}", model_config=stated)
    got = adapter.model.config
    assert got == dataclasses.replace(config, preprocess=got.preprocess, init_logit_scale=got.init_logit_scale,
                                      max_logit_scale=got.max_logit_scale)
    pixels, tokens = _inputs()
    want_image, want_text = _embed_flax(config, flat, pixels.numpy(), tokens.numpy())
    np.testing.assert_allclose(adapter.encode_images(pixels), want_image, rtol=0, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(adapter.model.encode_text(tokens).numpy(), want_text, rtol=0, atol=1e-5)
    jax_adapter = load_adapter(f"big_vision:{path}", model_config=stated, backend="jax")
    np.testing.assert_allclose(jax_adapter.encode_images(pixels), want_image, rtol=0, atol=1e-5)
    architecture = adapter.describe()["architecture"]
    assert architecture["image"]["pool_type"] == stated["image"]["pool_type"]
    assert architecture["text"]["pool_type"] == stated["text"]["pool_type"]
    assert architecture["logit_bias"] == (-7.5 if "bias_init" in stated else None)
    assert jax_adapter.describe()["architecture"] == architecture


def _message(error) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_an_ambiguous_tree_without_a_config_is_refused_naming_the_keys(tmp_path):
    name, layout, config, stated = BY_ID["CLIPA tok"]  # its tree always has img/cls and encoder_norm
    path, _ = _write_tree(tmp_path, layout, config, stated)
    with pytest.raises(CheckpointError) as error:
        load_adapter(f"big_vision:{path}")
    message = _message(error)
    assert "image.pool_type (a CLIPA tree always stores img/cls: 'gap' or 'tok' both fit)" in message
    assert "text.pool_type" in message and "--model-config" in message
    # GAP and tok do differ on it: the refusal is not over nothing.
    gap = load_adapter(f"big_vision:{path}", model_config={"image": {"pool_type": "gap"}})
    tok = load_adapter(f"big_vision:{path}", model_config=stated)
    pixels, _ = _inputs()
    assert np.abs(gap.encode_images(pixels) - tok.encode_images(pixels)).max() > 1e-2
    # A big_vision tree whose MAP head decides its image pooling is refused for the text pooling only.
    name, layout, config, stated = CASES[0]
    path, _ = _write_tree(tmp_path, layout, config, stated)
    with pytest.raises(CheckpointError) as error:
        import_two_towers(path)
    message = _message(error)
    assert "image.pool_type" not in message and "model.text.pool_type" in message
    # A big_vision tree without img/cls or a MAP head fits GAP and "0".
    path, _ = _write_tree(tmp_path, "big_vision", *BY_ID["big_vision 0, text first"][2:])
    with pytest.raises(CheckpointError, match=r"image\.pool_type \(a big_vision tree without img/cls or "
                                              r"img/MAPHead_0: 'gap' or '0' both fit\)"):
        import_two_towers(path)


def test_a_tree_whose_weights_decide_everything_loads_without_a_config(tmp_path):
    """MAP heads on both towers (SigLIP-style image pooling, big_vision's text "map") store their pooling."""
    name, layout, config, stated = BY_ID["big_vision map, text map"]
    path, flat = _write_tree(tmp_path, layout, config, stated)
    adapter = load_adapter(f"big_vision:{path}")
    assert adapter.describe()["architecture"]["text"]["pool_type"] == "map"
    assert adapter.describe()["architecture"]["model_config"] is None
    pixels, tokens = _inputs()
    want_image, want_text = _embed_flax(config, flat, pixels.numpy(), tokens.numpy())
    np.testing.assert_allclose(adapter.encode_images(pixels), want_image, rtol=0, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(adapter.model.encode_text(tokens).numpy(), want_text, rtol=0, atol=1e-5)


BAD_CONFIGS = [  # (id, model config, the line's expected text); the tree is big_vision map + b (CASES[0])
    ("unknown key", {"image": {"pool_typ": "map"}}, r"image\.pool_typ: not a key of .*did you mean 'pool_type'\?"),
    ("unknown top key", {"outdim": 24}, r"outdim: not a key of big_vision's model config; did you mean 'out_dim'"),
    ("unknown pool", {"image": {"pool_type": "avg"}}, r"image\.pool_type 'avg': expected one of 'gap', 'tok'"),
    ("unsupported text pool", {"text": {"pool_type": "none"}}, r"text\.pool_type 'none': expected one of 'last'"),
    ("text map the weights refute", {"image": {"pool_type": "map"}, "text": {"pool_type": "map"}},
     r"text\.pool_type 'map' does not fit .*: the tree has no text MAP head"),
    ("pool the weights refute", {"image": {"pool_type": "tok"}},
     r"image\.pool_type 'tok' does not fit .*big_vision\.npz: its big_vision weights fit 'map'"),
    ("default pool the weights refute", {"text": {"pool_type": "last"}},
     r"image\.pool_type 'gap' \(big_vision's default: the config leaves it out\) does not fit"),
    ("CLIPA's text pool on big_vision", {"image": {"pool_type": "map"}, "text": {"pool_type": "tok"}},
     r"text\.pool_type 'tok': not a pool_type of big_vision's text tower \('last', 'first', 'mean', 'max' or 'map'\)"),
    ("variant", {"image": {"variant": "B/16", "pool_type": "map"}},
     r"image\.variant 'B/16' means width 768, but .*big_vision\.npz has width 32"),
    ("explicit size", {"image": {"pool_type": "map"}, "text": {"num_heads": 4}},
     r"text\.num_heads means num_heads 4, but .* has num_heads 2"),
    ("vocab_size", {"image": {"pool_type": "map"}, "text": {"vocab_size": 32000}},
     r"text\.vocab_size means vocab_size 32000, but .* has vocab_size 49408"),
    ("out_dim", {"image": {"pool_type": "map"}, "out_dim": [24, 16]}, r"out_dim \[24, 16\] does not fit .*\[24, 24\]"),
    ("no image head", {"out_dim": [None, 24]}, r"out_dim \[None, 24\]: a image tower without a head"),
    ("posemb", {"image": {"pool_type": "map", "posemb": "sincos2d"}},
     r"image\.posemb 'sincos2d' does not fit .*stores img/pos_embedding"),
    ("bias", {"image": {"pool_type": "map"}, "bias_init": None}, r"bias_init None does not fit .* has a logit bias b"),
    ("rep_size", {"image": {"rep_size": True}}, r"image\.rep_size True: a pre-logits layer is not part"),
    ("text model", {"text_model": "proj.flaxformer.bert"}, r"text_model 'proj\.flaxformer\.bert': only"),
    ("not a mapping", {"image": "B/16"}, r"image: expected a mapping"),
    ("a run config of another model", {"model_name": "vit", "model": {"variant": "B/16"}, "lr": 1e-3},
     r"model_name 'vit': only two-tower models"),
    ("a run config's model part is read", {"model_name": "proj.image_text.two_towers", "lr": 1e-3,
                                           "model": {"image": {"pool_type": "tok"}}},
     r"image\.pool_type 'tok' does not fit"),
]


@pytest.mark.parametrize(("stated", "expected"), [row[1:] for row in BAD_CONFIGS], ids=[row[0] for row in BAD_CONFIGS])
def test_a_bad_config_is_refused_in_one_line_naming_the_key(stated, expected, tmp_path):
    path, _ = _write_tree(tmp_path, "big_vision", CASES[0][2], CASES[0][3])
    with pytest.raises(ConfigError) as error:
        load_adapter(f"big_vision:{path}", model_config=stated)
    assert __import__("re").search(expected, _message(error)), _message(error)


def test_config_files_json_and_yaml_through_the_cli_and_the_results(tmp_path, capsys):
    name, layout, config, stated = CASES[0]
    config = dataclasses.replace(config, vision=dataclasses.replace(config.vision, image_size=64))
    path, _ = _write_tree(tmp_path, layout, config, stated)
    yaml_file = tmp_path / "model.yaml"
    # vit.decode_variant's "mu" is 32 wide with 2 heads and 1 layer; the explicit depth overrides it, as in big_vision.
    yaml_file.write_text("model:\n  image: {variant: mu/8, depth: 2, pool_type: map}\n"
                         "  text: {variant: mu, depth: 2, pool_type: last, vocab_size: 49408}\n"
                         "  out_dim: 24\n  bias_init: -10.0\n  temperature_init: 10.0\n")
    json_file = tmp_path / "model.json"
    json_file.write_text(json.dumps(stated))
    task = load_task("shapes-zeroshot")
    synthesize(tmp_path / "data", dataclasses.replace(task.synth, zeroshot_per_class=1), sets=[task.synth_set],
               workers=0)
    for given in (json_file, yaml_file):
        capsys.readouterr()
        code = main(["--model", f"big_vision:{path}", "--model-config", str(given), "--task", "shapes-zeroshot",
                     "--data-dir", str(tmp_path / "data"), "--workers", "0", "--device", "cpu", "--output",
                     str(tmp_path / given.suffix)])
        assert code == 0, capsys.readouterr().err
        (written,) = (tmp_path / given.suffix).rglob("*.json")
        results = json.loads(written.read_text())
        validate_results(results, written)
        assert results["model"]["architecture"] == {
            "image": {"pool_type": "map", "posemb": "learn"}, "text": {"pool_type": "last"}, "logit_bias": -7.5,
            "model_config": str(given)}
    yaml_file.write_text("model:\n  image: {variant: mu/8, pool_type: map\n")
    capsys.readouterr()
    assert main(["--model", f"big_vision:{path}", "--model-config", str(yaml_file), "--task", "shapes-zeroshot",
                 "--data-dir", str(tmp_path / "data")]) == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert "model.yaml: not valid YAML" in line


def test_model_config_is_for_big_vision_trees_only():
    with pytest.raises(CheckpointError, match=r"--model-config applies to big_vision:PATH models only"):
        load_adapter("openclip:ViT-B-32", model_config={}, random_init=True)


def test_checkpoints_keep_loading_and_the_new_options_round_trip(tmp_path):
    """A format-2 config.json written before `final_norm` existed reads as it did (a final LayerNorm); a model with
    the new options saves and loads as itself."""
    model = CLIP(build_config("tiny"))
    directory = save_checkpoint(model, tmp_path / "old")
    stored = json.loads((directory / CONFIG_NAME).read_text())
    assert stored["vision"].pop("final_norm") is True
    (directory / CONFIG_NAME).write_text(json.dumps(stored))
    assert read_config(directory) == build_config("tiny")
    config = BY_ID["CLIPA map, text gap"][2]  # no final norm
    model = _torch_model(config, _random_params(config))
    loaded = load_model(save_checkpoint(model, tmp_path / "new"))
    assert loaded.config == config
    pixels, tokens = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(pixels), model.encode_image(pixels))
        assert torch.equal(loaded.encode_text(tokens), model.encode_text(tokens))
