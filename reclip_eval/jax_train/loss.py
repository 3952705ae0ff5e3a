"""The contrastive (InfoNCE) loss of the paper's eq. (1)-(2) in JAX: reclip_eval.train.loss.contrastive_loss.

Written over the global batch: under `jit` with the embeddings sharded along the batch (a `NamedSharding` over a
data-parallel mesh) the compiler inserts the gathers and the reduce-scatter of their gradients itself, so there is
no per-device formulation to get wrong by a factor of the device count (the torch version needs one, with an
autograd all-gather).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def contrastive_loss(image_emb: jax.Array, text_emb: jax.Array, scale: jax.Array) -> jax.Array:
    """(L_I2T + L_T2I) / 2 for L2-normalised (B, D) embeddings, pair i = (image i, text i), scale = 1/tau."""
    logits = scale * image_emb @ text_emb.T  # (B images, B texts)
    labels = jnp.arange(logits.shape[0])
    image_to_text = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    text_to_image = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
    return (image_to_text + text_to_image) / 2
