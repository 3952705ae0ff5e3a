"""Training the flax dual encoder (reclip_eval.flax_models) with JAX and optax. Needs the `jax` extra."""
