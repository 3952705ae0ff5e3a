"""The JAX trainer's optimizers as optax chains: AdamW as the torch trainer builds it from a recipe stage, and
Adafactor as big_vision trains with it (the paper's optimizer).

`recipe_adamw` is torch.optim.AdamW over the torch trainer's parameter groups (train/param_rules.py): the same
(lr, weight decay) per parameter, the decay decoupled and multiplied by the lr (torch's and optax.adamw's), the
schedule's multiplier per step from train/schedule.py (the numbers LambdaLR gives), and gradient clipping by the
global norm first. One difference is left: torch clips by max_norm / (norm + 1e-6), optax by max_norm / norm.

big_vision's variant is not `optax.adafactor`'s defaults (big_vision/optax.py, `scale_by_adafactor` and `make`):
- second moment: `optax.scale_by_factored_rms` with decay beta2_t = min(0.999, 1 - (t + 1)^-0.8) (t counts from 0,
  so the first step's beta2 is 0), eps 1e-30 added to the squared gradient, a parameter factored only when its
  second-largest dimension is >= 32;
- no update clipping, no scaling by the parameter's RMS (optax.adafactor's `multiply_by_parameter_scale`);
- momentum `optax.ema(0.9, debias=False)` with its accumulator kept in bfloat16 (optax multiplies the bfloat16
  accumulator by the weakly typed 0.9, so the decay in effect is bfloat16's 0.8984375, in big_vision too;
  tests/test_jax_train.py computes it so);
- the learning rate, then decoupled weight decay `wd * param` added *after* the learning-rate scale, so it is not
  multiplied by the lr, only by the schedule's multiplier (peak 1) like the rest of the update; by default only
  on kernels (`.*/kernel$`), not on biases, LayerNorm scales, embeddings or position embeddings.

update = -schedule(t) * (lr * ema(factored_rms(g)) + wd * param)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

from reclip_eval.flax_models.convert import flatten, unflatten

KERNELS = r".*/kernel$"  # big_vision's default `wd_mults`


def big_vision_beta2(beta2_cap: float = 0.999) -> Callable[[jax.Array, float], jax.Array]:
    """beta2_t = min(beta2_cap, 1 - (t + 1)^-exponent), `optax.scale_by_factored_rms`'s decay_rate_fn."""

    def decay(step: jax.Array, exponent: float) -> jax.Array:
        t = jnp.asarray(step, jnp.float32) + 1.0
        return jnp.minimum(beta2_cap, 1.0 - t ** (-exponent))

    return decay


def path_mask(pattern: str) -> Callable[[dict], dict]:
    """A mask function for optax: True for the leaves whose '/'-joined path matches `pattern` (re.fullmatch)."""
    regex = re.compile(pattern)

    def mask(params: dict) -> dict:
        paths = [path for path, _ in flatten(params)]
        flags = iter([bool(regex.fullmatch(path)) for path in paths])
        return jax.tree.map(lambda _: next(flags), params)

    return mask


def big_vision_adafactor(learning_rate: float, *, schedule: Callable[[jax.Array], jax.Array] | None = None,
                         weight_decay: float = 0.0, decay_pattern: str = KERNELS, min_dim_size_to_factor: int = 32,
                         decay_rate: float = 0.8, beta2_cap: float = 0.999, momentum: float | None = 0.9,
                         momentum_dtype: jnp.dtype = jnp.bfloat16, eps: float = 1e-30
                         ) -> optax.GradientTransformation:
    """The chain of the module docstring; `schedule(step)` is the learning-rate multiplier (None: constant 1)."""
    parts = [optax.scale_by_factored_rms(factored=True, decay_rate=decay_rate, step_offset=0,
                                         min_dim_size_to_factor=min_dim_size_to_factor, epsilon=eps,
                                         decay_rate_fn=big_vision_beta2(beta2_cap))]
    if momentum:
        parts.append(optax.ema(momentum, debias=False, accumulator_dtype=momentum_dtype))
    parts.append(optax.scale(learning_rate))
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay, mask=path_mask(decay_pattern)))
    if schedule is not None:
        parts.append(optax.scale_by_schedule(schedule))
    parts.append(optax.scale(-1.0))
    return optax.chain(*parts)


def recipe_adamw(settings: Mapping[str, tuple[float, float]], factors: Sequence[float], *,
                 betas: tuple[float, float], eps: float, grad_clip_norm: float | None
                 ) -> optax.GradientTransformation:
    """AdamW with `settings[path]` = (lr, weight decay) for every '/'-joined parameter path, the lr of step t
    multiplied by `factors[t]` (the last factor after the end)."""
    table = jnp.asarray(factors, jnp.float32)
    groups = {setting: f"group{i}" for i, setting in enumerate(sorted(set(settings.values())))}

    def adamw(lr: float, weight_decay: float) -> optax.GradientTransformation:
        def schedule(count: jax.Array) -> jax.Array:
            return lr * table[jnp.minimum(count, table.shape[0] - 1)]

        return optax.adamw(schedule, b1=betas[0], b2=betas[1], eps=eps, weight_decay=weight_decay)

    def labels(params: dict) -> dict:
        return unflatten({path: groups[settings[path]] for path, _ in flatten(params)})

    tx = optax.multi_transform({label: adamw(*setting) for setting, label in groups.items()}, labels)
    return optax.chain(optax.clip_by_global_norm(grad_clip_norm), tx) if grad_clip_norm else tx
