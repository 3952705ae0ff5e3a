"""The JAX training pieces (issue 16): big_vision's Adafactor against a direct computation, and the step over a
mesh of 8 CPU devices (tests/conftest.py asks jax for them) giving the unsharded loss and gradients."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec

from reclip_eval.flax_models.clip import CLIP, init_params
from reclip_eval.flax_models.convert import flatten
from reclip_eval.jax_train.optim import big_vision_adafactor, big_vision_beta2
from reclip_eval.jax_train.step import (
    data_mesh,
    fsdp_spec,
    init_state,
    loss_and_grads,
    make_train_step,
    param_shardings,
)
from reclip_eval.models import build_config


def _reference_adafactor(params, grads_per_step, *, lr, wd, schedule, min_dim=32, eps=1e-30):
    """big_vision's Adafactor written out per parameter in numpy, in float32 as optax computes it, the momentum
    kept in bfloat16 between steps."""
    params = {k: np.array(v, np.float32) for k, v in params.items()}
    stats, momenta = {}, {k: np.zeros(v.shape, ml_dtypes.bfloat16) for k, v in params.items()}
    for t, grads in enumerate(grads_per_step):
        beta2 = np.float32(min(0.999, 1.0 - (t + 1.0) ** -0.8))
        for name, p in params.items():
            g = np.asarray(grads[name], np.float32)
            g2 = g * g + np.float32(eps)
            order = np.argsort(p.shape) if p.ndim >= 2 else None
            if order is not None and p.shape[order[-2]] >= min_dim:
                d1, d0 = int(order[-2]), int(order[-1])  # second-largest, largest axis
                row_old, col_old = stats.get(name, (0.0, 0.0))
                row = beta2 * row_old + (1 - beta2) * g2.mean(axis=d0)
                col = beta2 * col_old + (1 - beta2) * g2.mean(axis=d1)
                stats[name] = (row, col)
                reduced = d1 - 1 if d1 > d0 else d1
                row_factor = (row / row.mean(axis=reduced, keepdims=True)) ** -0.5
                u = g * np.expand_dims(row_factor, d0) * np.expand_dims(col ** -0.5, d1)
            else:
                v = beta2 * stats.get(name, 0.0) + (1 - beta2) * g2
                stats[name] = v
                u = g * v ** -0.5
            # optax.ema's `decay * ema` multiplies the bfloat16 accumulator by a weakly typed Python float: the
            # decay itself becomes bfloat16 (0.9 -> 0.8984375) and so does the product.
            decay = np.float32(ml_dtypes.bfloat16(0.9))
            decayed = (decay * momenta[name].astype(np.float32)).astype(ml_dtypes.bfloat16)
            m = decayed.astype(np.float32) + np.float32(1 - 0.9) * u
            momenta[name] = m.astype(ml_dtypes.bfloat16)
            decay = wd * p if name.endswith("/kernel") else 0.0
            params[name] = p - np.float32(schedule(t)) * (np.float32(lr) * m + decay)
    return params


def test_big_vision_adafactor_equals_a_direct_computation():
    rng = np.random.default_rng(0)
    shapes = {"a/kernel": (64, 40), "b/kernel": (40, 20), "b/bias": (48,), "c/kernel": (3, 33, 64),
              "c/scale": (33,)}
    flat = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    grads = [{k: rng.standard_normal(s).astype(np.float32) * (i + 1) for k, s in shapes.items()} for i in range(4)]
    schedule = lambda t: jnp.minimum(1.0, (t + 1) / 3)  # noqa: E731  (a warmup: the multiplier changes per step)
    want = _reference_adafactor(flat, grads, lr=0.01, wd=0.1, schedule=lambda t: min(1.0, (t + 1) / 3))

    def tree(d):
        return {"a": {"kernel": d["a/kernel"]}, "b": {"kernel": d["b/kernel"], "bias": d["b/bias"]},
                "c": {"kernel": d["c/kernel"], "scale": d["c/scale"]}}

    tx = big_vision_adafactor(0.01, schedule=schedule, weight_decay=0.1)
    params = jax.tree.map(jnp.asarray, tree(flat))
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(jax.tree.map(jnp.asarray, tree(g)), state, params)
        params = optax.apply_updates(params, updates)
    got = dict(flatten(params))
    for name in shapes:
        np.testing.assert_allclose(np.asarray(got[name]), want[name], rtol=2e-5, atol=1e-6, err_msg=name)
    # The momentum is stored in bfloat16, the second-moment factors are a row and a column for factored kernels.
    rms, ema = state[0], state[1]
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(ema.ema))
    assert rms.v_row["a"]["kernel"].shape == (40,) and rms.v_col["a"]["kernel"].shape == (64,)
    assert rms.v["b"]["kernel"].shape == (40, 20)  # second-largest dimension 20 < 32: not factored


def test_beta2_schedule_is_big_vision_s():
    decay = big_vision_beta2()
    assert float(decay(0, 0.8)) == 0.0  # the first step takes the squared gradient as it is
    assert float(decay(1, 0.8)) == pytest.approx(1 - 2 ** -0.8)
    assert float(decay(10 ** 6, 0.8)) == pytest.approx(0.999)


@pytest.mark.parametrize(("shape", "want"), [
    ((49408, 32), PartitionSpec("data", None)),  # the largest axis
    ((36, 64), PartitionSpec(None, "data")),
    ((60, 36), PartitionSpec()),  # no axis divisible by 8
    ((3, 40, 8), PartitionSpec(None, "data", None)),  # largest divisible: 40
    ((16,), PartitionSpec()),  # below the size threshold
])
def test_fsdp_spec_splits_the_largest_divisible_axis_of_large_arrays(shape, want):
    assert fsdp_spec(shape, 8, min_size=64) == want


def _batch(config, n):
    rng = np.random.default_rng(1)
    pixels = rng.standard_normal((n, *config.vision.image_hw, 3)).astype(np.float32)
    tokens = np.zeros((n, config.text.context_length), np.int32)
    tokens[:, 0] = 49406
    for i in range(n):
        k = 2 + i % (config.text.context_length - 3)
        tokens[i, 1:k] = rng.integers(1, 49000, k - 1)
        tokens[i, k] = 49407
    return jnp.asarray(pixels), jnp.asarray(tokens)


CONFIG = build_config("tiny")


@pytest.mark.parametrize("fsdp", [False, True], ids=["data-parallel", "fsdp"])
def test_sharded_loss_and_gradients_equal_unsharded(fsdp):
    assert len(jax.devices()) == 8
    module, params = CLIP(CONFIG), init_params(CONFIG, seed=2)
    pixels, tokens = _batch(CONFIG, 16)
    want_loss, want_grads = loss_and_grads(module, params, pixels, tokens)
    mesh = data_mesh()
    shardings = param_shardings(params, mesh, fsdp=fsdp, min_size=1024)
    if fsdp:  # the embedding table and the kernels really are split
        specs = {path: s.spec for path, s in flatten(shardings)}
        assert specs["txt/Embed_0/embedding"] == PartitionSpec("data", None)
        assert sum(spec != PartitionSpec() for spec in specs.values()) >= 10
    loss, grads = loss_and_grads(module, params, pixels, tokens, mesh, shardings)
    assert float(loss) == pytest.approx(float(want_loss), rel=1e-6)
    for (path, g), (_, w) in zip(flatten(grads), flatten(want_grads), strict=True):
        w = np.asarray(w)
        # To 1e-5 of the tensor's largest gradient (measured: about 1e-6); a gradient scaled by the device count
        # (or its inverse) fails this by far. The floor is for the attention key biases, whose gradient is
        # mathematically zero (softmax ignores a shift of all logits) and numerically noise of about 1e-11.
        np.testing.assert_allclose(np.asarray(g), w, rtol=0, atol=1e-5 * np.abs(w).max() + 1e-9, err_msg=path)


def test_train_step_learns_and_keeps_the_fsdp_shardings():
    module, params = CLIP(CONFIG), init_params(CONFIG, seed=3)
    mesh = data_mesh()
    shardings = param_shardings(params, mesh, fsdp=True, min_size=1024)
    tx = big_vision_adafactor(1e-3, weight_decay=1e-4)
    state = init_state(params, tx, mesh, shardings)
    step = make_train_step(module, tx, mesh)
    pixels, tokens = _batch(CONFIG, 16)
    losses = []
    for _ in range(8):  # one batch over and over: the loss must fall
        state, metrics = step(state, pixels, tokens)
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 8
    assert losses[-1] < losses[0] - 0.1, losses
    first_loss, _ = loss_and_grads(module, params, pixels, tokens)
    assert losses[0] == pytest.approx(float(first_loss), rel=1e-6)  # step 1 computed the unsharded loss
    kept = jax.tree.map(lambda x, s: x.sharding.is_equivalent_to(s, x.ndim), state.params, shardings)
    assert all(jax.tree.leaves(kept))


def test_the_mesh_has_auto_axes_so_the_embedding_lookup_works():
    """jax.make_mesh's Explicit axes reject Linen's embedding gather; data_mesh's Auto axes do not."""
    mesh = data_mesh()
    assert mesh.axis_names == ("data",) and mesh.devices.size == 8
    config = dataclasses.replace(CONFIG)
    _, tokens = _batch(config, 8)
    params = jax.device_put(init_params(config), param_shardings(init_params(config), mesh, fsdp=True, min_size=64))
    out = jax.jit(lambda p, t: CLIP(config).apply({"params": p}, t, method=CLIP.encode_text))(params, tokens)
    assert out.shape == (8, config.embed_dim)


@pytest.mark.parametrize("devices", [1, 8], ids=["one device", "8 devices, FSDP"])
def test_the_step_compiles_once(devices, caplog):
    """The state a step returns has the shardings and committed-ness of the one it was given: found by
    benchmarks/jax_step.py, where on one device the second step compiled the whole step again (35 s on the CPU)
    because `tx.init`'s output was uncommitted."""
    import logging

    module, params = CLIP(CONFIG), init_params(CONFIG, seed=4)
    mesh = data_mesh(jax.devices()[:devices])
    tx = optax.adamw(1e-3)
    state = init_state(params, tx, mesh, param_shardings(params, mesh, fsdp=devices > 1, min_size=1024))
    step = make_train_step(module, tx, mesh)
    pixels, tokens = _batch(CONFIG, 8)
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        for _ in range(3):
            state, metrics = step(state, pixels, tokens)
    compiles = [r.getMessage()[:40] for r in caplog.records if r.getMessage().startswith("Compiling jit(step)")]
    assert len(compiles) == 1, compiles
