"""The detector's vocabulary: CLIP text embeddings of category names, from the annotation file the user has.

Names and synonyms come from the LVIS JSON's `categories` (never a hand-typed list). Each category's embedding is
prompt-ensembled (Radford et al. 2021; ViLD, F-VLM and RO-ViT do the same for LVIS): every phrase (the name and
each synonym, underscores read as spaces) is put into every template, the L2-normalised text embeddings are
averaged over templates, then over the category's phrases, and re-normalised. Embeddings are cached on disk, keyed
by the CLIP weights, its text-side config, the templates and the phrases (reclip_eval/classifier/cache.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from reclip_eval.classifier.cache import cache_key, cached_class_embeddings
from reclip_eval.classifier.ensemble import ensemble_prompts
from reclip_eval.classifier.templates import read_templates
from reclip_eval.errors import DataError
from reclip_eval.models.clip import CLIP
from reclip_eval.models.config import text_side
from reclip_eval.models.tokenizer import ClipTokenizer
from reclip_eval.paths import data_folder


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    synonyms: tuple[str, ...]
    frequency: str  # LVIS: "r", "c" or "f"

    @property
    def phrases(self) -> list[str]:
        """The name and the synonyms as text ("aerosol_can" -> "aerosol can"), without repeats."""
        return list(dict.fromkeys(_as_text(p) for p in (self.name, *self.synonyms)))


def _as_text(name: str) -> str:
    return " ".join(name.replace("_", " ").split())


def categories_from_json(data: dict, source: str) -> list[Category]:
    """The `categories` of an LVIS/COCO annotation dict, sorted by id."""
    raw = data.get("categories")
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{source}: no 'categories' list: not an LVIS annotation file")
    out = []
    for c in raw:
        if "id" not in c or "name" not in c:
            raise DataError(f"{source}: category {c!r} lacks 'id' or 'name'")
        out.append(Category(id=int(c["id"]), name=str(c["name"]), synonyms=tuple(c.get("synonyms") or ()),
                            frequency=str(c.get("frequency", "f"))))
    return sorted(out, key=lambda c: c.id)


def read_templates_file(templates: str) -> list[str]:
    """A recipe's templates file: a path relative to the tasks/ data folder, or an absolute path; one `{}` per line."""
    path = Path(templates).expanduser()
    if not path.is_absolute():
        path = data_folder("tasks") / templates
    return read_templates(path, not_found_hint="classifier.templates is relative to tasks/")


@torch.no_grad()
def encode_phrases(clip: CLIP, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """(N, D) L2-normalised text embeddings."""
    tokenizer = ClipTokenizer(clip.config.text.context_length)
    device = clip.logit_scale.device
    chunks = [clip.encode_text(tokenizer(texts[i:i + batch_size]).to(device), normalize=True).float()
              for i in range(0, len(texts), batch_size)]
    return torch.cat(chunks)


def build_text_embeddings(clip: CLIP, categories: Sequence[Category], templates: list[str]) -> torch.Tensor:
    """(C, D): per category, templates averaged, then phrases (name + synonyms) averaged, L2-normalised."""
    phrases = [c.phrases for c in categories]
    per_phrase = ensemble_prompts(lambda texts: encode_phrases(clip, texts), [p for group in phrases for p in group],
                                  templates)
    out, start = [], 0
    for group in phrases:
        out.append(per_phrase[start:start + len(group)].mean(0))
        start += len(group)
    return F.normalize(torch.stack(out), dim=-1)


def text_embeddings(clip: CLIP, categories: Sequence[Category], templates: list[str],
                    clip_sha256: str | None) -> torch.Tensor:
    """`build_text_embeddings`, cached on disk when the CLIP weights have a fingerprint (keyed like zero-shot class
    embeddings: weights, text-side config, templates, phrases, and the dtype the text tower runs in)."""
    key = cache_key(weights_sha256=clip_sha256, text_config=text_side(clip.config), templates=templates,
                    class_names=[c.phrases for c in categories], precision=str(clip.logit_scale.dtype),
                    purpose="detector_vocabulary")
    return cached_class_embeddings(key, lambda: build_text_embeddings(clip, categories, templates)).float()
