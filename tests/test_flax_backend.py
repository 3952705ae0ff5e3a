"""The flax model (reclip_eval.flax_models) against the torch model: exact weight conversion both ways, the same
embeddings, loss and gradients for the same weights and inputs, and `--backend jax` evaluation giving the torch
backend's metrics on the bundled demo (issue 16)."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from reclip_eval.checkpoint import load_model, save_checkpoint
from reclip_eval.data.synth.export import synthesize
from reclip_eval.errors import CheckpointError, UnknownNameError
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task
from reclip_eval.flax_models.clip import CLIP as FlaxCLIP
from reclip_eval.flax_models.clip import init_params
from reclip_eval.flax_models.convert import flatten, flax_to_torch, torch_to_flax
from reclip_eval.jax_train.loss import contrastive_loss as jax_contrastive_loss
from reclip_eval.leaderboard.measured import load_measured
from reclip_eval.models import CLIP, build_config
from reclip_eval.models.config import TextConfig, VisionConfig
from reclip_eval.train.loss import contrastive_loss
from reclip_eval.zoo.resolve import load_adapter

from .conftest import REPO, run_cli

EOT = 49407

_TINY_TOWER = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "heads": 2}
_TINY_TEXT = {"context_length": 16, "width": 32, "layers": 2, "heads": 2}
_FLAX_NUMERICS = {"activation": "gelu_tanh", "layer_norm_eps": 1e-6}  # big_vision's and CLIPA's
# Every architecture branch the converter and the flax towers have: GAP and class-token pooling, with and without
# the pre-LayerNorm, causal end-of-text, bidirectional mean and unmasked last-position text pooling, and the
# imported architectures' options (big_vision: class token without a position, patch and head biases; CLIPA: a
# class token left out of the average, LayerNorm after pooling, no patch bias, fixed sin-cos positions).
CONFIGS = {
    "mini (gap, eot)": build_config("mini"),
    "cls + ln_pre, mean text": dataclasses.replace(
        build_config("tiny"), vision=VisionConfig(**_TINY_TOWER, pool="cls", ln_pre=True),
        text=TextConfig(**_TINY_TEXT, pool="mean")),
    "big_vision (tok, last)": dataclasses.replace(
        build_config("tiny"),
        vision=VisionConfig(**_TINY_TOWER, pool="cls", class_token_position=False, head_bias=True, **_FLAX_NUMERICS),
        text=TextConfig(**_TINY_TEXT, pool="last", head_bias=True, **_FLAX_NUMERICS)),
    "CLIPA (cls + gap, sincos, last)": dataclasses.replace(
        build_config("tiny"),
        vision=VisionConfig(**_TINY_TOWER, class_token=True, norm_after_pool=True, patch_bias=False,
                            pos_embed="sincos2d", **_FLAX_NUMERICS),
        text=TextConfig(**_TINY_TEXT, pool="last", **_FLAX_NUMERICS)),
}


def _state(model: CLIP) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _tokens(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """Start token, random words, end-of-text, zero padding; captions of different lengths."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(batch, length, dtype=torch.long)
    tokens[:, 0] = 49406
    for i in range(batch):
        n = 2 + (i * 3) % (length - 2)
        tokens[i, 1:n] = torch.randint(1, 49000, (n - 1,), generator=g)
        tokens[i, n] = EOT
    return tokens


def _flax_embeddings(config, params, pixels: torch.Tensor, tokens: torch.Tensor):
    image, text, scale = FlaxCLIP(config).apply({"params": params}, jnp.asarray(pixels.numpy().transpose(0, 2, 3, 1)),
                                                jnp.asarray(tokens.numpy()))
    return np.asarray(image), np.asarray(text), float(scale)


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_conversion_is_exact_both_ways_and_fits_the_flax_tree(config):
    state = _state(CLIP(config))
    params = torch_to_flax(state, config)
    fresh = init_params(config)
    assert {p: a.shape for p, a in flatten(params)} == {p: a.shape for p, a in flatten(fresh)}
    back = flax_to_torch(params, config)
    assert set(back) == set(state)
    for key, array in state.items():
        assert back[key].shape == array.shape and back[key].dtype == array.dtype, key
        assert np.array_equal(back[key], array), key
    # And from flax's own init: flax -> torch -> flax is the identity too.
    again = dict(flatten(torch_to_flax(flax_to_torch(fresh, config), config)))
    assert all(np.array_equal(np.asarray(leaf), again[path]) for path, leaf in flatten(fresh))


def test_conversion_layouts_are_the_documented_ones():
    config = build_config("tiny")
    state = _state(CLIP(config))
    params = torch_to_flax(state, config)
    width, heads = config.vision.width, config.vision.heads
    attention = params["img"]["Transformer"]["encoderblock_0"]["MultiHeadDotProductAttention_0"]
    qkv = state["visual.transformer.blocks.0.attn.qkv.weight"]  # (3W, W): q, k, v rows
    assert attention["key"]["kernel"].shape == (width, heads, width // heads)
    assert np.array_equal(attention["key"]["kernel"].reshape(width, width), qkv[width:2 * width].T)
    assert np.array_equal(params["img"]["embedding"]["kernel"],
                          state["visual.patch_embed.weight"].transpose(2, 3, 1, 0))  # OIHW -> HWIO
    assert np.array_equal(params["txt"]["head"]["kernel"], state["text.proj.weight"].T)  # (out, in) -> (in, out)
    assert params["img"]["pos_embedding"].shape == state["visual.pos_embed"].shape == (1, 16, width)
    assert params["t"].shape == (1,) and params["t"][0] == state["logit_scale"]


def test_conversion_refuses_what_does_not_fit(tmp_path):
    config = build_config("tiny")
    state = _state(CLIP(config))
    missing = {k: v for k, v in state.items() if k != "text.proj.weight"}
    with pytest.raises(CheckpointError, match=r"missing text\.proj\.weight"):
        torch_to_flax(missing, config)
    with pytest.raises(CheckpointError, match=r"unexpected visual\.extra"):
        torch_to_flax({**state, "visual.extra": np.zeros(1)}, config)
    wrong = {**state, "visual.pos_embed": np.zeros((1, 17, config.vision.width), np.float32)}
    with pytest.raises(CheckpointError, match=r"img/pos_embedding has shape \(1, 17, 32\), the config needs "
                                              r"\(1, 16, 32\)"):
        torch_to_flax(wrong, config)


@pytest.mark.parametrize(("config", "image_size"), [
    (build_config("mini"), 64), (build_config("mini"), 48), (CONFIGS["big_vision (tok, last)"], 48),
    (CONFIGS["CLIPA (cls + gap, sincos, last)"], 48)],
    ids=["stored size", "resampled position embedding", "big_vision, resampled", "CLIPA, sin-cos recomputed"])
def test_embeddings_equal_torch(config, image_size, tmp_path):
    torch.manual_seed(3)
    save_checkpoint(CLIP(config), tmp_path / "ckpt")
    model = load_model(tmp_path / "ckpt", image_size=image_size).eval()  # e.g. 8x8 grid resampled to 6x6 at 48 px
    assert model.config.vision.image_size == image_size
    pixels, tokens = torch.randn(4, 3, image_size, image_size), _tokens(4, config.text.context_length)
    with torch.no_grad():
        want_image, want_text, want_scale = (x.numpy() for x in model(pixels, tokens))
    image, text, scale = _flax_embeddings(model.config, torch_to_flax(_state(model), model.config), pixels, tokens)
    np.testing.assert_allclose(image, want_image, rtol=0, atol=1e-5)
    np.testing.assert_allclose(text, want_text, rtol=0, atol=1e-5)
    assert scale == pytest.approx(float(want_scale), rel=1e-6)


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_loss_and_gradients_equal_torch(config):
    """Gradients, not parameters after an optimizer step: Adam's first step turns noise-level gradients (the key
    biases', mathematically zero) into visible differences that mean nothing."""
    torch.manual_seed(5)
    model = CLIP(config)
    params = torch_to_flax(_state(model), config)
    height, width = config.vision.image_hw
    pixels, tokens = torch.randn(8, 3, height, width), _tokens(8, config.text.context_length, seed=1)
    loss = contrastive_loss(*model(pixels, tokens))
    loss.backward()
    module, nhwc = FlaxCLIP(config), jnp.asarray(pixels.numpy().transpose(0, 2, 3, 1))

    def flax_loss(p):
        return jax_contrastive_loss(*module.apply({"params": p}, nhwc, jnp.asarray(tokens.numpy())))

    value, grads = jax.value_and_grad(flax_loss)(params)
    assert float(value) == pytest.approx(loss.item(), rel=1e-6)
    # The conversion is a permutation of entries, so it carries gradients exactly as it carries weights.
    grads = flax_to_torch(grads, config)
    for name, p in model.named_parameters():
        want = p.grad.numpy()
        # 5e-5 of the tensor's largest gradient: elementwise rtol is meaningless for the near-zero entries, and float32
        # sums in another order differ by about 1e-5 of it (1.4e-5 seen on text.proj.bias, big_vision config, on an
        # AMD EPYC CPU); a wrong conversion is off by the whole gradient.
        np.testing.assert_allclose(grads[name], want, rtol=0, atol=5e-5 * np.abs(want).max() + 1e-12, err_msg=name)


def test_jax_backend_evaluates_the_demo_as_torch_does(tmp_path):
    data = tmp_path / "data"
    tasks = [load_task("shapes-zeroshot"), load_task("shapes-retrieval")]
    for task in tasks:
        synthesize(data, dataclasses.replace(task.synth, zeroshot_per_class=4, retrieval_images=60),
                   sets=[task.synth_set], workers=2)
    torch_adapter, jax_adapter = load_adapter("reclip-demo"), load_adapter("reclip-demo", backend="jax")
    pixels = torch.randn(3, 3, 64, 64)
    np.testing.assert_allclose(jax_adapter.encode_images(pixels), torch_adapter.encode_images(pixels), atol=1e-5)
    texts = ["a red striped circle", "two blue squares at the top left"]
    np.testing.assert_allclose(jax_adapter.encode_texts(texts), torch_adapter.encode_texts(texts), atol=1e-5)
    for task in tasks:
        options = EvalOptions(data_dir=data, workers=0)
        want, got = evaluate(torch_adapter, task, options), evaluate(jax_adapter, task, options)
        assert got["metrics"] == want["metrics"], task.name
        assert got["model"]["backend"] == "jax" and "backend" not in want["model"]
        assert got["model"]["compute"]["image_gmacs"] == want["model"]["compute"]["image_gmacs"]


def test_cli_backend_jax_reproduces_the_committed_demo_result(tmp_path):
    """The README's first command on the jax backend: its own results file, the committed torch file's metrics."""
    out = run_cli("--model", "reclip-demo", "--task", "shapes-zeroshot", "--backend", "jax", "--output",
                  str(tmp_path / "results"), env={"RECLIP_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "results" / "reclip-demo__shapes-zeroshot__jax.json").read_text())
    committed = json.loads((REPO / "leaderboards" / "results" / "reclip-demo__shapes-zeroshot.json").read_text())
    assert results["model"]["backend"] == "jax"
    assert results["task"]["data_fingerprint"] == committed["task"]["data_fingerprint"]
    assert results["metrics"] == committed["metrics"]
    # Beside the torch file, the leaderboard shows it as a row of its own, not as the torch row's cell.
    (tmp_path / "results" / "reclip-demo__shapes-zeroshot.json").write_text(json.dumps(committed))
    rows = load_measured(tmp_path / "results")
    assert [(r.model, r.image_size) for r in rows] == [("reclip-demo", 64), ("reclip-demo [jax]", 64)]


def test_backend_is_checked_before_loading_and_only_for_our_checkpoints(tmp_path):
    with pytest.raises(UnknownNameError, match=r"unknown backend 'tensorflow'"):
        load_adapter(str(tmp_path / "no-such-model"), backend="tensorflow")
    with pytest.raises(CheckpointError, match=r"--backend jax evaluates our own checkpoints .* not open_clip"):
        load_adapter("openclip:ViT-B-32", random_init=True, backend="jax")


def test_compilation_cache_is_persistent_across_processes(tmp_path):
    """A second process compiling the same program reads it from the cache folder the first one wrote."""
    import subprocess
    import sys

    script = ("import jax, jax.numpy as jnp\n"
              "from reclip_eval.flax_models.compile_cache import enable_compilation_cache\n"
              f"print(enable_compilation_cache({str(tmp_path / 'jit')!r}))\n"
              "from reclip_eval.flax_models.clip import CLIP, init_params\n"
              "from reclip_eval.models import build_config\n"
              "c = build_config('mini'); p = init_params(c)\n"
              "jax.jit(lambda p, x, y: CLIP(c).apply({'params': p}, x, y))(p, jnp.zeros((2, 64, 64, 3)), "
              "jnp.zeros((2, 32), jnp.int32))\n")
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.strip() == str(tmp_path / "jit")
    def model_entries():  # the model's program (small helper programs near the time threshold may come and go)
        return {p.name: p.stat().st_mtime_ns for p in (tmp_path / "jit").glob("jit__lambda*")}

    written = model_entries()
    assert len(written) == 1, written
    second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert model_entries() == written  # read, not compiled and written again
