"""The frameworks a loaded model can be evaluated on (`--backend`): every model kind loads as a torch adapter, and a
backend turns that adapter into its own. `torch` keeps it; `jax` converts our checkpoints' weights to the flax model
(zoo/flax_adapter.py), imported only when asked for, so the torch paths never import jax.

A backend registers itself here with the function that converts an adapter; the CLI lists `BACKENDS.names()`.
"""

from __future__ import annotations

from collections.abc import Callable

from reclip_eval.registry import Registry
from reclip_eval.zoo.adapter import ModelAdapter

DEFAULT_BACKEND = "torch"

BACKENDS: Registry[Callable[[ModelAdapter], ModelAdapter]] = Registry("backend")


@BACKENDS.register("torch")
def _keep(adapter: ModelAdapter) -> ModelAdapter:
    return adapter


@BACKENDS.register("jax")
def _to_jax(adapter: ModelAdapter) -> ModelAdapter:
    from reclip_eval.zoo.flax_adapter import flax_adapter_for

    return flax_adapter_for(adapter)
