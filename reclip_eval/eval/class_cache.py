"""A disk cache for zero-shot class embeddings, keyed by (model weights, tokenizer, templates, class names,
precision). ImageNet's 1000 classes x 80 templates are 80,000 texts: encoding them once per model is enough."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from reclip_eval.atomic import atomic_path
from reclip_eval.distributed import is_main_process, map_sharded
from reclip_eval.paths import cache_dir

log = logging.getLogger(__name__)


def cache_key(model_description: dict, templates: list[str], class_names: list[str], precision: str) -> str | None:
    """None when the weights have no fingerprint (then nothing is cached)."""
    sha = (model_description.get("weights") or {}).get("sha256")
    if not sha:
        return None
    payload = json.dumps({"weights": sha, "family": model_description.get("family"),
                          "tokenizer": model_description.get("tokenizer"), "templates": templates,
                          "classes": class_names, "precision": precision}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def cached_class_embeddings(key: str | None, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
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
