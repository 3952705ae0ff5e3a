"""Tokenizers by spec: `build_tokenizer(spec, context_length=...)`, the one entry for `--tokenizer`,
`reclip_eval.load(tokenizer=...)` and a model config's `tokenizer:` key. Each kind tokenises exactly as the
codebase whose models use it does (lower-casing, length, padding, end of sequence), and `describe()` records the
kind, the file's sha256, the vocabulary size and the rules for the results.

    clip                                   CLIP's BPE, 49,408 tokens (open_clip's; models/tokenizer.py)
    sentencepiece:PATH[,eos=sticky|yes|none][,pad_value=ID_OR_PIECE][,lower=true|false][,add_bos=false][,max_len=N]
                                           big_vision's `tokenize` op (SigLIP, LiT; tokenizers_sentencepiece.py)
    bert:PATH[,max_len=N]                  big_vision's / CLIPA's `bert_tokenize` op over a vocab.txt
                                           (tokenizers_bert.py)
    a big_vision pp string with one of those ops, as a config writes it, e.g.
        tokenize(max_len=64, model="spm.model", eos="sticky", pad_value=1, inkey="texts")
        bert_tokenize(inkey="texts", max_len=16, vocab_path="vocab.txt")
      (the op's own defaults apply; the string's other ops are refused, e.g. lower or strfmt, except those that
      leave one caption as it is: keep, copy, setdefault, choice)

Options after the path are `,KEY=VALUE`; max_len, when given, must be the text tower's length.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reclip_eval.errors import CheckpointError

# Each kind registers itself when imported; this is the list of them.
from reclip_eval.models import tokenizers_bert, tokenizers_sentencepiece  # noqa: F401
from reclip_eval.models.tokenizers_registry import (
    TOKENIZER_KINDS,
    TextTokenizer,
    TokenizerKind,
    resolve_options,
    tokenizer_file,
)

CLIP_SPEC = "clip"
PP_OP = re.compile(r"^\s*\w+\s*\(|\|")  # a spec that is a pp string: NAME(... or ops joined by |
# big_vision's names for its gs:// SentencePiece models (ops_text.KNOWN_TOKENIZERS): nothing is downloaded here.
BIG_VISION_NAMED = ("mc4", "cc_all", "c4_en", "t5", "mt5")
CLIP_VOCAB = 49408
# pp ops that never change a caption's ids, and may stand beside the tokenizer in a config's pp_txt.
NEUTRAL_PP_OPS = ("keep", "copy", "setdefault", "choice")


class DescribedClipTokenizer:
    """CLIP's BPE tokenizer (unchanged: models/tokenizer.py) with the `describe()` the other kinds have."""

    vocab_size = CLIP_VOCAB

    def __init__(self, context_length: int):
        from reclip_eval.models.tokenizer import ClipTokenizer

        self._tokenizer = ClipTokenizer(context_length)
        self.context_length = context_length

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> Any:
        return self._tokenizer(texts, context_length)

    def describe(self) -> dict[str, Any]:
        # As our own models' results have always said it (a changed description would read as another setup).
        return {"name": "clip-bpe", "context_length": self.context_length}


def tokenizer_usage() -> str:
    return ", ".join([CLIP_SPEC, *(kind.usage for kind in TOKENIZER_KINDS.values())])


@dataclass(frozen=True)
class TokenizerSpec:
    """A spec parsed and its file found, before anything reads the file (so before a model is loaded)."""

    spec: str
    kind: TokenizerKind | None  # None: CLIP's BPE
    path: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def build(self, context_length: int) -> TextTokenizer:
        if self.kind is None:
            return DescribedClipTokenizer(context_length)
        return self.kind.build(self.path, context_length=context_length, spec=self.spec, **self.options)


def parse_tokenizer_spec(spec: str) -> TokenizerSpec:
    """`spec` (grammar above) checked: its kind, options and file (which must exist); one CheckpointError line
    naming what is wrong."""
    spec = spec.strip()
    if spec == CLIP_SPEC:
        return TokenizerSpec(spec, None)
    if PP_OP.search(spec):
        kind, argument, options = _from_pp(spec)
    else:
        name, colon, rest = spec.partition(":")
        if not colon:
            raise CheckpointError(f"tokenizer {spec!r}: expected {tokenizer_usage()}, or a big_vision pp string")
        kind = TOKENIZER_KINDS.get(name)
        argument, options = _split_options(spec, rest)
    path = tokenizer_file(spec, kind, argument)
    return TokenizerSpec(spec, kind, path, resolve_options(spec, kind, options))


def build_tokenizer(spec: str, *, context_length: int) -> TextTokenizer:
    """The tokenizer `spec` names (grammar above), padding to `context_length` (the text tower's positions).
    Every problem with the spec or its file is one CheckpointError line naming it."""
    return parse_tokenizer_spec(spec).build(context_length)


def tokenizer_for_tree(spec: str | TokenizerSpec | None, *, rows: int, context_length: int,
                       source: str) -> TextTokenizer:
    """The tokenizer for a text tower with `rows` embedding rows: `spec`'s, or CLIP's BPE when none is given and
    the tower has CLIP's 49,408 rows (any other size is refused: its tokenizer cannot be guessed). The tokenizer's
    ids must all have a row; more rows than ids is accepted (CLIPA's towers: 32,000 rows, bert-base's 30,522). A
    SentencePiece model may have more pieces than rows when every piece beyond them is a special one (T5's
    `<extra_id_N>` after mc4's 250,000, SigLIP i18n's 250,000 rows): a caption that spells one out is refused."""
    if spec is None:
        if rows != CLIP_VOCAB:
            raise CheckpointError(f"{source}: the text embedding has {rows} rows, not CLIP's BPE ({CLIP_VOCAB}); "
                                  "give its tokenizer: --tokenizer sentencepiece:PATH.model or bert:PATH/vocab.txt")
        spec = CLIP_SPEC
    parsed = spec if isinstance(spec, TokenizerSpec) else parse_tokenizer_spec(spec)
    tokenizer = parsed.build(context_length)
    if tokenizer.vocab_size > rows:
        limit = getattr(tokenizer, "limit_to_rows", None)
        why = limit(rows) if limit is not None else "the ids beyond have no row"
        if why:
            raise CheckpointError(f"{source}: the text embedding has {rows} rows, but tokenizer {parsed.spec!r} has "
                                  f"{tokenizer.vocab_size} tokens ({why}); they must be the model's own vocabulary")
    return tokenizer


def _split_options(spec: str, rest: str) -> tuple[str, dict[str, str]]:
    """`PATH,KEY=VALUE,...` -> (PATH, options); a comma not followed by KEY= stays part of the path."""
    parts = rest.split(",")
    options: dict[str, str] = {}
    while len(parts) > 1 and "=" in parts[-1] and parts[-1].split("=", 1)[0].strip().isidentifier():
        key, value = parts.pop().split("=", 1)
        if key.strip() in options:
            raise CheckpointError(f"tokenizer {spec!r}: {key.strip()} is given twice")
        options[key.strip()] = value.strip()
    return ",".join(parts), options


def _from_pp(spec: str) -> tuple[TokenizerKind, str, dict[str, Any]]:
    """A big_vision pp string -> its tokenizer op's kind, file and options (the op's own defaults)."""
    ops_by_name = {kind.pp_op: kind for kind in TOKENIZER_KINDS.values() if kind.pp_op}
    found: list[tuple[TokenizerKind, ast.Call]] = []
    for op in (part.strip() for part in spec.split("|") if part.strip()):
        try:
            call = ast.parse(op, mode="eval").body
        except SyntaxError:
            raise CheckpointError(f"tokenizer {spec!r}: {op!r} is not a pp op (NAME(ARGS))") from None
        name = call.func.id if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) else None
        if name is None and isinstance(call, ast.Name):
            name, call = call.id, ast.Call(func=call, args=[], keywords=[])  # an op without arguments
        if name in ops_by_name:
            found.append((ops_by_name[name], call))
        elif name not in NEUTRAL_PP_OPS:
            raise CheckpointError(f"tokenizer {spec!r}: pp op {op!r} is not one whose effect on a caption is "
                                  f"reproduced here (tokenizer ops: {', '.join(ops_by_name)})")
    if len(found) != 1:
        raise CheckpointError(f"tokenizer {spec!r}: expected exactly one of the ops {', '.join(ops_by_name)}, "
                              f"found {len(found)}")
    kind, call = found[0]
    try:
        values = {kind.pp_positional[i]: ast.literal_eval(arg) for i, arg in enumerate(call.args)}
        for keyword in call.keywords:
            if keyword.arg is None or keyword.arg in values:
                raise CheckpointError(f"tokenizer {spec!r}: {kind.pp_op}: argument {keyword.arg!r} given twice "
                                      "or unpacked")
            values[keyword.arg] = ast.literal_eval(keyword.value)
    except (ValueError, IndexError):
        raise CheckpointError(f"tokenizer {spec!r}: {kind.pp_op}'s arguments must be literals, at most "
                              f"{len(kind.pp_positional)} positional ({', '.join(kind.pp_positional)})") from None
    missing = [key for key in kind.pp_required if key not in values]
    if missing:
        raise CheckpointError(f"tokenizer {spec!r}: {kind.pp_op} needs {', '.join(missing)} (the op has no default)")
    path = values.pop(kind.pp_path_key, None)
    if path in BIG_VISION_NAMED:
        raise CheckpointError(f"tokenizer {spec!r}: {kind.pp_path_key}={path!r} is big_vision's name for a gs:// "
                              f"file, which is not downloaded here; give the local path of {kind.file}")
    if not isinstance(path, str):
        raise CheckpointError(f"tokenizer {spec!r}: {kind.pp_op} needs {kind.pp_path_key}: the local path of "
                              f"{kind.file} (big_vision's names for gs:// vocabularies are not fetched)")
    options = {**kind.pp_defaults, **{k: v for k, v in values.items() if k not in kind.pp_ignored}}
    return kind, path, options
