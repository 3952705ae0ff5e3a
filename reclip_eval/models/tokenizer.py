"""The CLIP BPE tokenizer (49,408 tokens), reused from open_clip, which ships the vocabulary file offline."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=1)
def _simple_tokenizer():
    """open_clip's SimpleTokenizer, from its own module file but without importing the open_clip package: the
    package's __init__ imports every model (timm, torchvision, transformers), seconds of CPU time that an evaluation
    of our own models never uses (measured: 6.6 CPU-s of 8 for `import open_clip.tokenizer`). The module imports only
    the standard library, ftfy, numpy, regex and torch, and finds its vocabulary beside its own file; where open_clip
    is already imported, its module is the one used."""
    import importlib.util
    import sys

    module = sys.modules.get("open_clip.tokenizer")
    if module is None:
        spec = importlib.util.find_spec("open_clip")  # locates the package without running its __init__
        path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer.py"
        spec = importlib.util.spec_from_file_location("reclip_eval._open_clip_tokenizer", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.SimpleTokenizer()


class ClipTokenizer:
    """`tokenizer(texts) -> LongTensor (N, context_length)`: <start> tokens <end>, zero padded.

    Longer texts are truncated to `context_length` with the last kept position replaced by the end token, so the
    end-of-text pooling always finds it (open_clip's `SimpleTokenizer` behaviour, which this wraps).
    """

    def __init__(self, context_length: int):
        if context_length < 2:
            raise ValueError(f"context_length must be >= 2, got {context_length}")
        self.context_length = context_length

    @property
    def end_token_id(self) -> int:
        return _simple_tokenizer().eot_token_id

    @property
    def start_token_id(self) -> int:
        return _simple_tokenizer().sot_token_id

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        return _simple_tokenizer()(list(texts), context_length=context_length or self.context_length)

    def encode(self, text: str) -> list[int]:
        """A caption's BPE ids, without start and end tokens and without truncation."""
        return _simple_tokenizer().encode(text)

    def words(self, text: str) -> list[str]:
        """The caption cleaned and split as the BPE sees it (CLIP's pre-tokenizer): each word is encoded on its
        own, so `sum(encode_word(w) for w in words(text)) == encode(text)`, which syntax reduction relies on."""
        import regex

        tokenizer = _simple_tokenizer()
        return regex.findall(tokenizer.pat, tokenizer.clean_fn(text))

    def encode_word(self, word: str) -> list[int]:
        """One word of `words()` -> its BPE ids."""
        tokenizer = _simple_tokenizer()
        word = "".join(tokenizer.byte_encoder[b] for b in word.encode("utf-8"))
        return [tokenizer.encoder[piece] for piece in tokenizer.bpe(word).split(" ")]

    def decode(self, tokens: torch.Tensor) -> str:
        ids = [int(t) for t in tokens if int(t) not in (0, self.start_token_id, self.end_token_id)]
        return _simple_tokenizer().decode(ids).strip()
