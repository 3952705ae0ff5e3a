"""Text token reduction: which caption tokens of a training stage enter the text tower.

A stage's `text_tokens` spec (`TextTokens`) picks how a caption longer than the stage's `text_length` is cut to it.
The budget is `text_length - 2` caption tokens between the start and end tokens, as in CLIPA ("An Inverse Scaling
Law for CLIP Training", Li, Wang, Xie 2023, Section 3.2) and open_clip's `get_reduction_mask_fn`; a caption that
fits is never touched.

- `truncate` (RECLIP, CLIP): the first tokens; the end token replaces the last kept one (CLIP's tokenizer).
- `random` (CLIPA's "random masking"): a uniformly drawn subset, kept in caption order (open_clip's `random`;
  CLIPA's JAX code and open_clip's `shuffle` also shuffle them: we keep the order, which a causal tower can read).
- `block` (CLIPA's "block masking", open_clip's `simple`): one contiguous span at a uniformly drawn start.
- `syntax` (CLIPA's "syntax masking"): nouns first, then adjectives, then verbs, then the rest, kept in caption
  order. Words are tagged in context (data/syntax_tags.py), as open_clip does with NLTK; CLIPA's JAX code instead
  tags each vocabulary piece out of context. open_clip keeps `budget` *words* and truncates their BPE pieces
  afterwards, which can cut the very nouns it ranked first; here the budget counts BPE pieces, and a word is kept
  whole or not at all (on captions of one piece per word the two agree: tests/test_text_reduction.py).

`truncate` and `syntax` are functions of the caption alone, so the data workers apply them (`encode_captions`).
`random` and `block` draw: the workers hand out captions at `SOURCE_LENGTH` tokens and `select_text_tokens`
reduces them with the step's explicit generator (seeded from the recipe seed, stage, step and rank, as the image
masks are), so a resumed run draws the same tokens and nothing depends on the global RNG.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from reclip_eval.config import Rule, enforce_rules

if TYPE_CHECKING:
    import torch

KINDS = ("truncate", "random", "block", "syntax")
# Captions are tokenized at CLIP's context length before `random` / `block` pick from them: tokens past it are
# beyond what CLIP's tokenizer (and open_clip's) ever hands a model.
SOURCE_LENGTH = 77
# `step_generator` keys of the text draws start with this tag, so they never coincide with an image mask's keys.
TEXT_DRAWS_TAG = 7_465_784


@dataclass(frozen=True)
class TextTokens:
    kind: Literal["truncate", "random", "block", "syntax"] = "truncate"
    # syntax only: the part-of-speech tagger (data/syntax_tags.py); None: the best one installed, recorded per run.
    tagger: str | None = None

    config_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(("tagger", "kind"), lambda t, k: None if t is None or k == "syntax" else
             f"a tagger is for syntax reduction only, not {k}"),
    )

    def __post_init__(self) -> None:
        enforce_rules(self)

    @property
    def draws(self) -> bool:
        """Whether the reduction draws random numbers (then it runs per step, in `select_text_tokens`)."""
        return self.kind in ("random", "block")

    def describe(self, tagger: str | None = None) -> str:
        """'truncate', 'random', 'block', or 'syntax (TAGGER)' with the tagger a run used."""
        tagger = tagger or self.tagger
        return f"{self.kind} ({tagger})" if self.kind == "syntax" and tagger else self.kind

    def source_length(self, text_length: int) -> int:
        """Tokens per caption that the data workers hand out for a stage of `text_length`."""
        return max(SOURCE_LENGTH, text_length) if self.draws else text_length


def select_text_tokens(tokens: torch.Tensor, spec: TextTokens, text_length: int,
                       generator: torch.Generator | None) -> torch.Tensor:
    """(B, S) CLIP BPE ids (start, caption, end, zero padding) -> (B, text_length), reduced as `spec` says.

    Every row draws (a fixed number of draws per batch, whatever the captions), but only rows whose caption is
    longer than the budget change; the others are cut at `text_length` (padding only)."""
    import torch

    if not spec.draws:
        if tokens.shape[1] != text_length:
            raise ValueError(f"{spec.kind} text reduction is applied by the tokenizer: expected {text_length} "
                             f"tokens per caption, got {tokens.shape[1]}")
        return tokens
    if generator is None:
        raise ValueError("random and block text reduction draw from an explicit torch.Generator; got none")
    batch, source = tokens.shape
    budget = text_length - 2
    if source < text_length:
        raise ValueError(f"captions of {source} tokens cannot be reduced to {text_length}")
    end = tokens.argmax(dim=1)  # the end token has the largest id (49407), as the end-of-text pooling assumes
    caption = end - 1  # caption tokens between start and end
    position = torch.arange(source, device=tokens.device).expand(batch, source)
    if spec.kind == "random":
        noise = torch.rand(batch, source, generator=generator, device=tokens.device)
        inside = (position >= 1) & (position < end[:, None])
        picked = noise.masked_fill(~inside, 2.0).argsort(dim=1)[:, :budget].sort(dim=1).values
    else:
        start = (torch.rand(batch, generator=generator, device=tokens.device) * (caption - budget + 1).clamp_min(1))
        picked = 1 + start.long()[:, None] + torch.arange(budget, device=tokens.device)
    long = caption > budget
    picked = torch.where(long[:, None], picked, position[:, 1:budget + 1])  # in range for every row
    reduced = torch.cat([tokens[:, :1], tokens.gather(1, picked), tokens.gather(1, end[:, None])], dim=1)
    return torch.where(long[:, None], reduced, tokens[:, :text_length])


def syntax_pieces(words: list[list[int]], priorities: list[int], budget: int) -> list[int]:
    """The BPE pieces kept of a caption's `words` (each a list of pieces) within `budget` pieces: words in order of
    (priority, position), each whole, until the next one does not fit; then back in caption order."""
    ranked = sorted(range(len(words)), key=lambda i: (priorities[i], i))
    kept, used = set(), 0
    for i in ranked:
        if used + len(words[i]) > budget:
            break
        kept.add(i)
        used += len(words[i])
    return [piece for i in sorted(kept) for piece in words[i]]


def encode_captions(texts: list[str], spec: TextTokens, text_length: int, tokenizer,
                    tag: Callable[[list[str]], list[int]] | None = None) -> torch.Tensor:
    """Captions -> (B, spec.source_length(text_length)) ids as the data workers hand them out: `truncate` and
    `random` / `block` (which `select_text_tokens` reduces later) are CLIP's tokenizer at that length; `syntax`
    reduces the captions longer than the budget by their words' priorities (`tag`: words -> 1 noun, 2 adjective,
    3 verb, 4 other; data/syntax_tags.py)."""
    import torch

    if spec.kind != "syntax":
        return tokenizer(texts, spec.source_length(text_length))
    if tag is None:
        raise ValueError("syntax text reduction needs a part-of-speech tagger")
    budget, rows = text_length - 2, []
    for text in texts:
        pieces = tokenizer.encode(text)
        if len(pieces) > budget:
            words = tokenizer.words(text)
            pieces = syntax_pieces([tokenizer.encode_word(w) for w in words], tag(words), budget)
        rows.append([tokenizer.start_token_id, *pieces, tokenizer.end_token_id])
    result = torch.zeros(len(rows), text_length, dtype=torch.long)
    for i, row in enumerate(rows):
        result[i, :len(row)] = torch.tensor(row)
    return result
