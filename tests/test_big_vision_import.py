"""Import of big_vision and CLIPA two-tower `.npz` checkpoints (issue 16), and the architecture options it needs,
checked against open_clip's CLIPA model and against checkpoints written in exactly those trees."""

import dataclasses
import re

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import open_clip
import pytest
import torch

from reclip_eval.data.synth.export import synthesize
from reclip_eval.errors import CheckpointError
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task
from reclip_eval.flax_models.big_vision_npz import import_two_towers, read_npz
from reclip_eval.flax_models.clip import CLIP as FlaxCLIP
from reclip_eval.flax_models.clip import init_params
from reclip_eval.flax_models.convert import flatten
from reclip_eval.models import CLIP
from reclip_eval.models.config import CLIPConfig, TextConfig, VisionConfig
from reclip_eval.models.pos_embed import sincos_2d
from reclip_eval.zoo.resolve import load_adapter

WIDTH, HEADS, PATCH, SIZE = 32, 2, 8, 32
FLAX_NUMERICS = {"activation": "gelu_tanh", "layer_norm_eps": 1e-6}


def _config(vision: dict, text: dict, embed_dim: int = 24) -> CLIPConfig:
    return CLIPConfig(
        embed_dim=embed_dim,
        vision=VisionConfig(image_size=SIZE, patch_size=PATCH, width=WIDTH, layers=2, heads=HEADS, **vision),
        text=TextConfig(context_length=16, width=WIDTH, layers=2, heads=HEADS, **text))


BIG_VISION = _config({"pool": "cls", "class_token_position": False, "head_bias": True, **FLAX_NUMERICS},
                     {"pool": "last", "head_bias": True, **FLAX_NUMERICS})
BIG_VISION_GAP = _config({"head_bias": True, **FLAX_NUMERICS}, {"pool": "last", "head_bias": True, **FLAX_NUMERICS})
CLIPA = _config({"class_token": True, "norm_after_pool": True, "patch_bias": False, **FLAX_NUMERICS},
                {"pool": "last", **FLAX_NUMERICS})
CLIPA_SINCOS = dataclasses.replace(CLIPA, vision=dataclasses.replace(CLIPA.vision, pos_embed="sincos2d"))
# big_vision's model configs of the trees above: what their weights cannot tell (issue 34: never guessed).
TOK_LAST = {"image": {"pool_type": "tok"}, "text": {"pool_type": "last"}}
GAP_LAST = {"image": {"pool_type": "gap"}, "text": {"pool_type": "last"}}


def _random_params(config: CLIPConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """A flax model of the tree, randomly initialised; biases and norms perturbed so that none is trivially 0/1."""
    rng = np.random.default_rng(seed)
    flat = {path: np.asarray(leaf) for path, leaf in flatten(init_params(config, seed))}
    return {path: (a + rng.normal(0, 0.05, a.shape).astype(np.float32) if path.endswith(("bias", "scale", "cls"))
                   else a) for path, a in flat.items()}


def _as_clipa_tree(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our flax tree (big_vision's names) in CLIPA's: text blocks under txt/Transformer, txt/encoder_norm."""
    out = {}
    for path, array in flat.items():
        path = path.replace("txt/Encoder_0/encoder_norm/", "txt/encoder_norm/")
        out[path.replace("txt/Encoder_0/", "txt/Transformer/")] = array
    return out


def _scanned(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """big_vision's scan=True layout: one `encoderblock` per encoder, parameters stacked along a depth axis."""
    out, stacks = {}, {}
    for path, array in flat.items():
        match = re.match(r"^(.*)/encoderblock_(\d+)/(.*)$", path)
        if match:
            stacks.setdefault(f"{match[1]}/encoderblock/{match[3]}", {})[int(match[2])] = array
        else:
            out[path] = array
    for path, layers in stacks.items():
        out[path] = np.stack([layers[i] for i in sorted(layers)])
    return out


def _bf16_void(array: np.ndarray) -> np.ndarray:
    """How an .npz holds bfloat16 when written without ml_dtypes registered: raw 2-byte voids."""
    return array.astype(ml_dtypes.bfloat16).view("V2")


def _embed_flax(config: CLIPConfig, flat: dict[str, np.ndarray], pixels: np.ndarray, tokens: np.ndarray):
    from reclip_eval.flax_models.convert import unflatten

    image, text, _ = FlaxCLIP(config).apply({"params": unflatten(flat)}, jnp.asarray(pixels.transpose(0, 2, 3, 1)),
                                            jnp.asarray(tokens))
    return np.asarray(image), np.asarray(text)


def _inputs(batch: int = 3, size: int = SIZE):
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(batch, 3, size, size, generator=g)
    tokens = torch.randint(1, 49000, (batch, 16), generator=g)
    tokens[1, 9:] = 0  # padding, which these text towers attend to
    return pixels, tokens


def _embed_imported(path, image_size=None, model_config=TOK_LAST):
    adapter = load_adapter(f"big_vision:{path}", image_size=image_size, model_config=model_config)
    pixels, tokens = _inputs(size=image_size or SIZE)
    with torch.no_grad():
        return adapter, adapter.model.encode_image(pixels).numpy(), adapter.model.encode_text(tokens).numpy()


def test_the_written_trees_are_the_documented_ones():
    """The fixtures below are the issue's trees key for key (for a 2-layer model), not this project's guess."""
    block = {"LayerNorm_0/scale", "LayerNorm_0/bias", "LayerNorm_1/scale", "LayerNorm_1/bias",
             "MlpBlock_0/Dense_0/kernel", "MlpBlock_0/Dense_0/bias", "MlpBlock_0/Dense_1/kernel",
             "MlpBlock_0/Dense_1/bias"} | {f"MultiHeadDotProductAttention_0/{p}/{w}" for p in
                                            ("query", "key", "value", "out") for w in ("kernel", "bias")}
    blocks = lambda prefix: {f"{prefix}/encoderblock_{i}/{k}" for i in range(2) for k in block}  # noqa: E731
    norm = lambda prefix: {f"{prefix}/scale", f"{prefix}/bias"}  # noqa: E731
    big_vision = ({"img/embedding/kernel", "img/embedding/bias", "img/pos_embedding", "img/cls", "img/head/kernel",
                   "img/head/bias", "txt/Embed_0/embedding", "txt/pos_embedding", "txt/head/kernel", "txt/head/bias",
                   "t"} | blocks("img/Transformer") | norm("img/Transformer/encoder_norm") | blocks("txt/Encoder_0")
                  | norm("txt/Encoder_0/encoder_norm"))
    assert set(_random_params(BIG_VISION)) == big_vision
    clipa = ({"img/embedding/kernel", "img/pos_embedding", "img/cls", "img/head/kernel", "txt/Embed_0/embedding",
              "txt/pos_embedding", "txt/head/kernel", "t"} | blocks("img/Transformer") | norm("img/encoder_norm")
             | blocks("txt/Transformer") | norm("txt/encoder_norm"))
    assert set(_as_clipa_tree(_random_params(CLIPA))) == clipa
    assert _random_params(CLIPA)["img/pos_embedding"].shape == (1, 1 + (SIZE // PATCH) ** 2, WIDTH)
    assert _random_params(BIG_VISION)["img/pos_embedding"].shape == (1, (SIZE // PATCH) ** 2, WIDTH)
    assert "img/pos_embedding" not in _random_params(CLIPA_SINCOS)


@pytest.mark.parametrize(("config", "layout", "stated"), [(BIG_VISION, "big_vision", TOK_LAST),
                                                          (BIG_VISION_GAP, "big_vision", GAP_LAST),
                                                          (CLIPA, "clipa", GAP_LAST)],
                         ids=["big_vision tok", "big_vision gap", "CLIPA"])
def test_imported_checkpoint_gives_the_trees_embeddings_on_both_backends(config, layout, stated, tmp_path):
    flat = _random_params(config)
    written = _as_clipa_tree(flat) if layout == "clipa" else flat
    np.savez(tmp_path / "model.npz", **written)
    imported = import_two_towers(tmp_path / "model.npz", model_config=stated)
    assert imported.layout == layout
    got = imported.config  # all but what a config-less file cannot say the same way
    assert got == dataclasses.replace(config, preprocess=got.preprocess, init_logit_scale=got.init_logit_scale,
                                      max_logit_scale=got.max_logit_scale)
    adapter, image, text = _embed_imported(tmp_path / "model.npz", model_config=stated)
    pixels, tokens = _inputs()
    want_image, want_text = _embed_flax(config, flat, pixels.numpy(), tokens.numpy())
    np.testing.assert_allclose(image, want_image, rtol=0, atol=1e-5)
    np.testing.assert_allclose(text, want_text, rtol=0, atol=1e-5)
    described = adapter.describe()
    assert described["family"] == layout and described["weights"]["format"] == f"{layout} .npz"
    jax_adapter = load_adapter(f"big_vision:{tmp_path / 'model.npz'}", backend="jax", model_config=stated)
    np.testing.assert_allclose(jax_adapter.encode_images(pixels), image, atol=1e-5)


def test_big_vision_file_details_params_prefix_optimizer_state_bfloat16_and_scanned_blocks(tmp_path):
    flat = _random_params(BIG_VISION, seed=2)
    bf16 = {"img/head/kernel", "txt/Embed_0/embedding"}
    rounded = {k: a.astype(ml_dtypes.bfloat16).astype(np.float32) if k in bf16 else a for k, a in flat.items()}
    stored = {f"params/{k}": _bf16_void(a) if k in bf16 else a for k, a in _scanned(flat).items()}
    stored |= {"opt/0/mu/img/head/kernel": np.zeros(3, np.float32), "chrono/accum_train_time": np.zeros(())}
    np.savez(tmp_path / "ckpt.npz", **stored)
    assert np.load(tmp_path / "ckpt.npz")["params/img/head/kernel"].dtype.kind == "V"  # what the reader must handle
    read = read_npz(tmp_path / "ckpt.npz")
    assert set(read) == set(flat)
    assert all(np.array_equal(read[k], rounded[k]) for k in flat)
    _, image, text = _embed_imported(tmp_path / "ckpt.npz")
    pixels, tokens = _inputs()
    want_image, want_text = _embed_flax(BIG_VISION, rounded, pixels.numpy(), tokens.numpy())
    np.testing.assert_allclose(image, want_image, rtol=0, atol=1e-5)
    np.testing.assert_allclose(text, want_text, rtol=0, atol=1e-5)


def test_clipa_sincos_positions_are_regenerated_at_the_size_asked(tmp_path):
    flat = _as_clipa_tree(_random_params(CLIPA_SINCOS, seed=3))
    np.savez(tmp_path / "h.npz", **flat)
    with pytest.raises(CheckpointError, match=r"h\.npz: the image positions are fixed sin-cos .* give image_size"):
        import_two_towers(tmp_path / "h.npz", model_config=GAP_LAST)
    adapter, image, _ = _embed_imported(tmp_path / "h.npz", image_size=48, model_config=GAP_LAST)
    assert adapter.model.config.vision.pos_embed == "sincos2d" and adapter.image_size == 48
    assert torch.equal(adapter.model.visual.pos_embed, torch.from_numpy(sincos_2d((6, 6), WIDTH, class_row=True)))
    at48 = dataclasses.replace(CLIPA_SINCOS, vision=dataclasses.replace(CLIPA_SINCOS.vision, image_size=48))
    pixels, tokens = _inputs(size=48)
    want_image, _ = _embed_flax(at48, _random_params(CLIPA_SINCOS, seed=3), pixels.numpy(), tokens.numpy())
    np.testing.assert_allclose(image, want_image, rtol=0, atol=1e-5)


def test_sincos_table_is_the_moco_v3_formula():
    table = sincos_2d((2, 3), 8)[0]  # width 8: two frequencies per quarter, 1 and 1/10000
    row, column = 1, 2
    token = row * 3 + column
    omega = np.array([1.0, 1e-4])
    expected = np.concatenate([np.sin(column * omega), np.cos(column * omega), np.sin(row * omega),
                               np.cos(row * omega)])
    np.testing.assert_allclose(table[token], expected, rtol=1e-6)
    assert np.array_equal(sincos_2d((2, 3), 8, class_row=True)[0, 0], np.zeros(8))


def _clipa_open_clip_model() -> open_clip.model.CLIP:
    """open_clip's ViT-*-CLIPA configuration (ViT-L-14-CLIPA.json's options) at a tiny size, random init."""
    vision = {"image_size": SIZE, "layers": 2, "width": WIDTH, "head_width": WIDTH // HEADS, "patch_size": PATCH,
              "no_ln_pre": True, "pool_type": "avg", "final_ln_after_pool": True}
    text = {"context_length": 16, "vocab_size": 49408, "width": WIDTH, "heads": HEADS, "layers": 2,
            "pool_type": "last", "no_causal_mask": True}
    torch.manual_seed(0)
    model = open_clip.model.CLIP(embed_dim=24, vision_cfg=vision, text_cfg=text).eval()
    with torch.no_grad():  # open_clip zero-initialises nothing that matters, but make every tensor count
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.add_(torch.randn_like(p) * 0.05)
    return model


def _from_open_clip(state: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    """open_clip's CLIP state dict in our torch model's names (a test-side map, written from open_clip's modules)."""
    out = {"visual.patch_embed.weight": state["visual.conv1.weight"],
           "visual.cls_token": state["visual.class_embedding"].reshape(1, 1, -1),
           "visual.pos_embed": state["visual.positional_embedding"][None],
           "visual.norm.weight": state["visual.ln_post.weight"], "visual.norm.bias": state["visual.ln_post.bias"],
           "visual.proj.weight": state["visual.proj"].T,
           "text.token_embed.weight": state["token_embedding.weight"],
           "text.pos_embed": state["positional_embedding"][None],
           "text.norm.weight": state["ln_final.weight"], "text.norm.bias": state["ln_final.bias"],
           "text.proj.weight": state["text_projection"].T, "logit_scale": state["logit_scale"]}
    for theirs, ours in (("visual.transformer", "visual.transformer"), ("transformer", "text.transformer")):
        for i in range(layers):
            t, o = f"{theirs}.resblocks.{i}", f"{ours}.blocks.{i}"
            pairs = {"ln_1": "norm1", "ln_2": "norm2", "attn.out_proj": "attn.proj", "mlp.c_fc": "mlp.fc1",
                     "mlp.c_proj": "mlp.fc2"}
            for a, b in pairs.items():
                out[f"{o}.{b}.weight"], out[f"{o}.{b}.bias"] = state[f"{t}.{a}.weight"], state[f"{t}.{a}.bias"]
            out[f"{o}.attn.qkv.weight"], out[f"{o}.attn.qkv.bias"] = (state[f"{t}.attn.in_proj_weight"],
                                                                      state[f"{t}.attn.in_proj_bias"])
    return out


def test_clipa_architecture_equals_open_clips_clipa_model():
    """Where open_clip and CLIPA agree (open_clip's CLIPA configs use exact GELU and eps 1e-5; CLIPA's JAX code
    tanh and 1e-6; and open_clip's sin-cos table uses MAE's frequencies, not CLIPA's): class token in the position
    table, GAP without it, LayerNorm after pooling, no patch bias, no pre-LayerNorm, unmasked last-token text."""
    reference = _clipa_open_clip_model()
    config = _config({"class_token": True, "norm_after_pool": True, "patch_bias": False}, {"pool": "last"})
    model = CLIP(config).eval()
    model.load_state_dict(_from_open_clip(reference.state_dict(), layers=2), strict=True)
    pixels, tokens = _inputs()
    with torch.no_grad():
        np.testing.assert_allclose(model.encode_image(pixels).numpy(), reference.encode_image(pixels, normalize=True)
                                   .numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(model.encode_text(tokens).numpy(), reference.encode_text(tokens, normalize=True)
                                   .numpy(), rtol=0, atol=1e-5)


def test_imported_model_is_evaluated_like_any_other(tmp_path):
    flat = _random_params(dataclasses.replace(BIG_VISION, vision=dataclasses.replace(BIG_VISION.vision,
                                                                                      image_size=64)))
    np.savez(tmp_path / "model.npz", **flat)
    task = load_task("shapes-zeroshot")
    synthesize(tmp_path / "data", dataclasses.replace(task.synth, zeroshot_per_class=2), sets=[task.synth_set],
               workers=0)
    result = evaluate(load_adapter(f"big_vision:{tmp_path / 'model.npz'}", model_config=TOK_LAST), task,
                      EvalOptions(data_dir=tmp_path / "data", workers=0))
    assert result["model"]["family"] == "big_vision" and result["model"]["image_size"] == 64
    assert 0 <= result["metrics"]["top1"] <= 100


def test_what_cannot_be_imported_says_why(tmp_path):
    flat = _random_params(BIG_VISION)
    (tmp_path / "orbax").mkdir()
    (tmp_path / "orbax" / "params~img~head~kernel").mkdir()
    with pytest.raises(CheckpointError, match=r"orbax: a tensorstore \(orbax\) checkpoint folder.* \.npz"):
        import_two_towers(tmp_path / "orbax")
    np.savez(tmp_path / "rep.npz", **flat, **{"img/pre_logits/kernel": np.zeros((WIDTH, WIDTH), np.float32)})
    with pytest.raises(CheckpointError, match=r"rep\.npz: img/pre_logits/kernel .* a pre-logits layer"):
        import_two_towers(tmp_path / "rep.npz", model_config=TOK_LAST)
    wrong_vocab = {**flat, "txt/Embed_0/embedding": np.zeros((32000, WIDTH), np.float32)}
    np.savez(tmp_path / "spm.npz", **wrong_vocab)
    with pytest.raises(CheckpointError, match=r"spm\.npz: the text vocabulary has 32000 entries.* --tokenizer"):
        import_two_towers(tmp_path / "spm.npz", model_config=TOK_LAST)
    lost = "img/Transformer/encoderblock_1/MlpBlock_0/Dense_1/bias"
    np.savez(tmp_path / "partial.npz", **{k: v for k, v in flat.items() if k != lost})
    with pytest.raises(CheckpointError, match=rf"partial\.npz: .*missing {lost}"):
        load_adapter(f"big_vision:{tmp_path / 'partial.npz'}", model_config=TOK_LAST)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(CheckpointError, match=r"one\.npy: a single \.npy array"):
        import_two_towers(tmp_path / "one.npy")
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(CheckpointError, match=r"objects\.npz: not a readable \.npz of plain arrays"):
        import_two_towers(tmp_path / "objects.npz")


def test_the_layout_can_be_named_and_a_wrong_one_is_refused(tmp_path):
    np.savez(tmp_path / "bv.npz", **_random_params(BIG_VISION))
    assert import_two_towers(tmp_path / "bv.npz", layout="big_vision", model_config=TOK_LAST).layout == "big_vision"
    with pytest.raises(CheckpointError, match=r"bv\.npz: layout 'clipa' asked for, but the tree is big_vision's"):
        import_two_towers(tmp_path / "bv.npz", layout="clipa")
    from reclip_eval.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match=r"unknown checkpoint tree layout 'siglip'"):
        import_two_towers(tmp_path / "bv.npz", layout="siglip")
