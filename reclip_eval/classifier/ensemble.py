"""Prompt ensembling (Radford et al. 2021, section 3.1.4): a class embedding is the mean of the embeddings of its
name put into every template, re-normalised. Zero-shot classification uses it per class name; the detector per
phrase (a category's name and synonyms), then averages a category's phrases itself (detect/vocabulary.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

# texts -> (len(texts), D) L2-normalised float32 embeddings: a numpy array (a model adapter's encode_texts, whatever
# its framework) or a torch tensor (the detector's frozen CLIP, on its device). Each caller brings its own, so this
# module depends on no model family.
TextEncoder = Callable[[list[str]], np.ndarray | torch.Tensor]


def ensemble_prompts(encode: TextEncoder, names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """(len(names), D): per name, the mean of its L2-normalised template embeddings, re-normalised."""
    texts = [template.format(name) for name in names for template in templates]
    embeddings = torch.as_tensor(encode(texts))  # a numpy array is shared, not copied; a tensor stays on its device
    per_name = embeddings.view(len(names), len(templates), embeddings.shape[-1]).mean(dim=1)
    return F.normalize(per_name, dim=-1)
