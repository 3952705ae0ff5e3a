"""One jit-compiled training step of the flax dual encoder over a data-parallel mesh, parameters replicated or
FSDP-sharded.

The loss is written over the global batch (jax_train/loss.py) and the step is one `jit` whose inputs carry
`NamedSharding`s: the batch split along the mesh's `data` axis, each parameter replicated or split along one of its
axes. The compiler inserts the all-gathers of embeddings and parameters and the reductions of gradients itself, so
there is no per-device loss whose gradient could come out scaled by the device count (what a hand-written
`shard_map` version has to get right). The mesh is built with `jax.sharding.Mesh` over the devices, whose axes are
of the Auto kind: `jax.make_mesh` defaults to Explicit axes since jax 0.9, which Linen's embedding lookup rejects.

FSDP as big_vision shards (`big_vision/sharding.py`, strategy `fsdp`): a parameter of at least `min_size` elements
is split along its largest axis that the device count divides; smaller ones, and those with no such axis, stay
replicated. The optimizer state follows from the parameters' shardings (XLA propagates them through `tx.init`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reclip_eval.jax_train.loss import contrastive_loss
from reclip_eval.models.token_reduction import ImageTokens

DATA_AXIS = "data"


class TrainState(NamedTuple):
    step: jax.Array
    params: Any
    opt_state: Any


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: all of jax's), axis `data`."""
    return Mesh(np.array(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def fsdp_spec(shape: tuple[int, ...], devices: int, min_size: int) -> PartitionSpec:
    """Split the largest axis that `devices` divides, for arrays of at least `min_size` elements; else replicate."""
    if devices > 1 and int(np.prod(shape, dtype=np.int64)) >= min_size:
        for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):  # largest first, then the earlier axis
            if shape[axis] % devices == 0:
                return PartitionSpec(*[DATA_AXIS if a == axis else None for a in range(len(shape))])
    return PartitionSpec()


def param_shardings(params: Any, mesh: Mesh, *, fsdp: bool = False, min_size: int = 2 ** 16) -> Any:
    """The NamedSharding of every parameter: replicated, or FSDP-split as `fsdp_spec` says."""
    devices = mesh.devices.size
    return jax.tree.map(lambda p: NamedSharding(mesh, fsdp_spec(p.shape, devices, min_size) if fsdp
                                                else PartitionSpec()), params)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Examples split along `data`; the global batch must be a multiple of the device count."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def init_state(params: Any, tx: optax.GradientTransformation, mesh: Mesh, shardings: Any) -> TrainState:
    """Parameters placed as `shardings`, the optimizer state initialised from them; whatever the compiler left on
    one device (step counters) replicated over the mesh, so that every input of the step lives on the mesh."""
    # Copies: the step donates its state, which must not delete the caller's arrays (device_put alone may hand a
    # caller's single-device buffer on as the device-0 shard of a replicated array).
    params = jax.device_put(jax.tree.map(jax.numpy.copy, params), shardings)
    replicated = NamedSharding(mesh, PartitionSpec())
    everywhere = set(mesh.devices.flat)

    def on_mesh(x: jax.Array) -> jax.Array:
        # Committed, as the step's outputs are: jit's cache keys include committed-ness, so an uncommitted leaf
        # (what `tx.init` returns on a one-device mesh) would make the second step compile the whole step again.
        return jax.device_put(x, x.sharding if set(x.sharding.device_set) == everywhere else replicated)

    opt_state = jax.tree.map(on_mesh, jax.jit(tx.init)(params))
    return TrainState(step=jax.device_put(jax.numpy.zeros((), jax.numpy.int32), replicated), params=params,
                      opt_state=opt_state)


def make_train_step(module, tx: optax.GradientTransformation, mesh: Mesh, *,
                    image_tokens: ImageTokens | None = None, seed: int = 0
                    ) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """step(state, pixels (B, H, W, 3), tokens (B, L)) -> (new state, {"loss", "temperature_scale"}), compiled once
    per input shape; the batch is placed along `data`, the state keeps its shardings.

    `image_tokens` masks image tokens (FLIP, CLIPA) with the key fold_in(key(seed), state.step): a function of the step,
    so a resumed run draws the masks it would have drawn. A step whose loss is not finite leaves the state as it
    was (the caller stops the run), so the weights never see its gradients."""
    batch = batch_sharding(mesh)

    def loss_fn(params, pixels, tokens, key):
        image, text, scale = module.apply({"params": params}, pixels, tokens, image_tokens, rngs={"mask": key})
        return contrastive_loss(image, text, scale), scale

    def step(state: TrainState, pixels: jax.Array, tokens: jax.Array):
        key = jax.random.fold_in(jax.random.key(seed), state.step)
        (loss, scale), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, pixels, tokens, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jax.numpy.isfinite(loss)
        new = TrainState(state.step + 1, params, opt_state)
        new = jax.tree.map(lambda updated, old: jax.numpy.where(finite, updated, old), new, state)
        return new, {"loss": loss, "temperature_scale": scale}

    compiled: dict[str, Any] = {}

    def run(state: TrainState, pixels, tokens):
        if "step" not in compiled:  # the state's shardings are known now: keep them (FSDP stays FSDP)
            keep = jax.tree.map(lambda x: x.sharding, state)
            compiled["step"] = jax.jit(step, donate_argnums=0, out_shardings=(keep, NamedSharding(mesh,
                                                                                                 PartitionSpec())))
        return compiled["step"](state, jax.device_put(pixels, batch), jax.device_put(tokens, batch))

    return run


def loss_and_grads(module, params: Any, pixels: jax.Array, tokens: jax.Array, mesh: Mesh | None = None,
                   shardings: Any = None) -> tuple[jax.Array, Any]:
    """The loss and its gradients (no update), on `mesh` with parameters placed as `shardings` when given: how the
    tests check that sharding changes nothing."""

    def loss_fn(p, x, t):
        return contrastive_loss(*module.apply({"params": p}, x, t))

    if mesh is not None:
        params = jax.device_put(params, shardings)
        pixels, tokens = jax.device_put(pixels, batch_sharding(mesh)), jax.device_put(tokens, batch_sharding(mesh))
    return jax.jit(jax.value_and_grad(loss_fn))(params, pixels, tokens)
