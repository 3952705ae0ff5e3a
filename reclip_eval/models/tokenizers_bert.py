"""`bert:PATH/vocab.txt`: the `bert_tokenize` preprocessing op of big_vision (pp/proj/flaxformer/bert_ops.py) and of
CLIPA (clipa_jax/transforms/bert_ops.py, the same op), which CLIPA's JAX models and big_vision's BERT-text LiT
models were trained and evaluated with. The WordPiece lookup is the `tokenizers` package's WordPiece model.

What the op does to one caption (tensorflow_text's BertTokenizer with lower_case=True, then pad_model_inputs):
  1. Lower-casing: ICU's NFKC_Casefold (case folding with NFKC, default-ignorable characters dropped), NFD, then
     combining marks (\\p{Mn}) removed: accents go.
  2. Control and format characters (\\p{Cc}, \\p{Cf}) become spaces.
  3. Words: split at runs of ASCII whitespace (RE2's \\s), and at each ASCII punctuation character, Unicode
     punctuation (\\p{P}) and CJK ideograph, which are kept as words of their own.
  4. WordPiece, greedy longest match first, "##" continuations; a word of more than 100 UTF-8 bytes, or one that
     cannot be covered, is one [UNK].
  5. The ids cut to max_len - 1, zero-padded to max_len - 1, and [CLS] put first. No [SEP] is added.
Ids are line numbers of vocab.txt. The op pads with id 0, so line 0 must be [PAD]: otherwise padding would read as a
word. The op itself has no other options; max_len is the tower's text length.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import regex

from reclip_eval.errors import CheckpointError
from reclip_eval.models.tokenizers_registry import (
    FileTokenizer,
    Option,
    TokenizerKind,
    fit_context,
    register_tokenizer_kind,
)

MAX_BYTES_PER_WORD = 100  # tensorflow_text's WordpieceTokenizer default, in bytes (not characters)
NEEDED = ("[PAD]", "[CLS]", "[UNK]")
_IGNORABLE = regex.compile(r"\p{Default_Ignorable_Code_Point}")
_MARKS = regex.compile(r"\p{Mn}")
_CONTROLS = regex.compile(r"\p{Cc}|\p{Cf}")
_CJK = ("\u4E00-\u9FFF\u3400-\u4DBF\U00020000-\U0002A6DF\U0002A700-\U0002B73F\U0002B740-\U0002B81F"
        "\U0002B820-\U0002CEAF\uF900-\uFAFF\U0002F800-\U0002FA1F")
# A kept delimiter (punctuation, CJK), or a dropped one (RE2's \s: [\t\n\f\r ]); words are what lies between.
_SPLIT = regex.compile(r"([!-/:-@\[-`{-~\p{P}" + _CJK + r"])|[\t\n\f\r ]+")


def nfkc_casefold(text: str) -> str:
    """ICU's NFKC_Casefold (tensorflow_text's case_fold_utf8) from Python's Unicode tables."""
    folded = _IGNORABLE.sub("", unicodedata.normalize("NFKC", text).casefold())
    return unicodedata.normalize("NFKC", folded)


def basic_words(text: str) -> list[str]:
    """Steps 1-3 above: the words WordPiece sees."""
    text = _MARKS.sub("", unicodedata.normalize("NFD", nfkc_casefold(text)))
    text = _CONTROLS.sub(" ", text)
    return [word for word in _SPLIT.split(text) if word]


def read_vocab(path: Path, spec: str) -> dict[str, int]:
    """vocab.txt's lines -> their line numbers, checked: UTF-8, no duplicates, [PAD] first, [CLS] and [UNK]."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"tokenizer {spec!r}: {path} is not UTF-8 text ({e.reason} at byte {e.start}); "
                              "expected a BERT vocab.txt, one token a line") from None
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    vocab: dict[str, int] = {}
    for number, token in enumerate(lines):
        if token in vocab:
            raise CheckpointError(f"tokenizer {spec!r}: {path} line {number + 1}: {token!r} is also line "
                                  f"{vocab[token] + 1}; each token once expected")
        vocab[token] = number
    missing = [token for token in NEEDED if token not in vocab]
    if missing:
        raise CheckpointError(f"tokenizer {spec!r}: {path} has no {', '.join(missing)} line; a BERT vocab.txt "
                              f"has {', '.join(NEEDED)} (bert_tokenize puts [CLS] first and pads with id 0)")
    if vocab["[PAD]"] != 0:
        raise CheckpointError(f"tokenizer {spec!r}: {path}: [PAD] is line {vocab['[PAD]'] + 1}, but bert_tokenize "
                              "pads with id 0 (line 1), so padding would read as a word")
    return vocab


class BertTokenizer(FileTokenizer):
    kind = "bert"

    def __init__(self, path: Path, *, context_length: int, spec: str, max_len: int | None):
        super().__init__(path, fit_context(spec, max_len, context_length))
        try:
            from tokenizers.models import WordPiece
        except ImportError:
            raise CheckpointError(f"tokenizer {spec!r}: the tokenizers package is not installed "
                                  "(pip install 'reclip-eval[hf]')") from None
        vocab = read_vocab(path, spec)
        self.vocab_size = len(vocab)
        self.cls_id, self.unk_id = vocab["[CLS]"], vocab["[UNK]"]
        # The byte limit is checked here (WordPiece's own limit counts characters).
        self._wordpiece = WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                                    max_input_chars_per_word=MAX_BYTES_PER_WORD)

    def encode_ids(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in basic_words(text):
            if len(word.encode("utf-8")) > MAX_BYTES_PER_WORD:
                ids.append(self.unk_id)
            else:
                ids.extend(token.id for token in self._wordpiece.tokenize(word))
        body = ids[:self.context_length - 1]
        return [self.cls_id, *body, *[0] * (self.context_length - 1 - len(body))]

    def rules(self) -> dict[str, Any]:
        return {"op": "bert_tokenize", "lower": "nfkc_casefold, accents stripped", "first": "[CLS]",
                "eos": "none", "pad_id": 0, "max_bytes_per_word": MAX_BYTES_PER_WORD}


def _build(path: Path, *, context_length: int, spec: str, **options: Any) -> BertTokenizer:
    return BertTokenizer(path, context_length=context_length, spec=spec, **options)


BERT = register_tokenizer_kind(TokenizerKind(
    name="bert", file="a BERT WordPiece vocab.txt", build=_build, options={"max_len": Option(int, None)},
    pp_op="bert_tokenize", pp_path_key="vocab_path", pp_positional=("vocab_path", "max_len", "sample_if_multi"),
    pp_ignored=("sample_if_multi", "inkey", "outkey"), pp_required=("vocab_path", "max_len")))
