"""A disk cache for class embeddings: zero-shot classifiers and the detector's vocabulary. ImageNet's 1000 classes
x 80 templates are 80,000 texts: encoding them once per model is enough.

The key is everything that changes a class embedding: the weights (sha256), the resolved text-side config (text
tower, projection width, tokenizer and context length), the templates, the class names (or phrases) and the
precision. Weights alone are not enough: the same weights with `text.pool: mean` embed the classes differently."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from reclip_eval.atomic import atomic_path
from reclip_eval.distributed import is_main_process, map_sharded
from reclip_eval.paths import cache_dir

log = logging.getLogger(__name__)

# Bump when what the cached tensors mean changes (how they are computed, not what they are keyed on).
CACHE_FORMAT = 2


def cache_key(*, weights_sha256: str | None, text_config: dict[str, Any], templates: list[str],
              class_names: list[Any], precision: str, purpose: str = "zeroshot") -> str | None:
    """None when the weights have no fingerprint (then nothing is cached). `class_names` may be any JSON-able
    per-class value (a detector category's phrases, say); `purpose` keeps differently pooled embeddings apart."""
    if not weights_sha256:
        return None
    payload = json.dumps({"format": CACHE_FORMAT, "purpose": purpose, "weights": weights_sha256,
                          "text_config": text_config, "templates": templates, "classes": class_names,
                          "precision": precision}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def cached_class_embeddings(key: str | None, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The embeddings cached under `key`, else `compute()`, then cached by the main process (`key` None: never)."""
    if key is None:
        return compute()
    from safetensors.torch import load_file, save_file

    path = Path(cache_dir()) / "class_embeddings" / f"{key}.safetensors"
    cached = None
    if path.is_file():
        try:
            cached = load_file(str(path))["classifier"]
        except Exception as e:  # a damaged cache entry is recomputed, never trusted
            log.warning("ignoring unreadable class-embedding cache %s (%s)", path, e)
    # Under torchrun the text encoding is a collective: every process must take the same branch.
    if all(map_sharded([cached is not None], lambda shard, offset: all(shard))):
        return cached
    embeddings = compute()
    if is_main_process():
        with atomic_path(path) as tmp:
            save_file({"classifier": embeddings.contiguous()}, str(tmp))
    return embeddings
