"""The RECLIP dual encoder in flax (Linen), built from the same config dataclasses as the torch model
(reclip_eval.models.config), with exact weight conversion both ways (convert.py). Needs the `jax` extra."""
