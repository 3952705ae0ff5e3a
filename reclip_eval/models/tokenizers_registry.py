"""The tokenizer kinds a `--tokenizer` spec can name, as one registry, and the spec grammar they share.

A kind registers itself from its own module (tokenizers_sentencepiece.py, tokenizers_bert.py); reclip_eval.models.
tokenizers imports them and builds tokenizers from specs. Each kind declares its options with their types and
defaults, and, where it mirrors a preprocessing op of big_vision's pp language, the op's name and its positional
parameters, so the same kind is reached from `KIND:PATH,KEY=VALUE` and from the op as a config writes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reclip_eval.errors import CheckpointError
from reclip_eval.registry import Registry


class TextTokenizer(Protocol):
    """What a model adapter needs from a tokenizer: `tokenizer(texts) -> LongTensor (N, context_length)`."""

    context_length: int
    vocab_size: int

    def __call__(self, texts: str | list[str]) -> Any: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Option:
    kind: type  # int, bool or str
    default: Any
    choices: tuple[Any, ...] = ()
    int_or_str: bool = False  # big_vision's pad_value: an id, or a piece whose id is used


@dataclass(frozen=True)
class TokenizerKind:
    name: str
    file: str  # what PATH is, for usage text and errors ("a SentencePiece .model")
    build: Callable[..., TextTokenizer]  # build(path, *, context_length, **options)
    options: Mapping[str, Option] = field(default_factory=dict)
    pp_op: str | None = None  # the big_vision / CLIPA preprocessing op this kind tokenises as
    pp_path_key: str | None = None  # the op's parameter naming the file
    pp_positional: tuple[str, ...] = ()  # the op's parameters in order (a pp string may pass them positionally)
    pp_ignored: tuple[str, ...] = ()  # the op's parameters that do not change one caption's ids
    pp_required: tuple[str, ...] = ()  # the op's parameters without a default
    pp_defaults: Mapping[str, Any] = field(default_factory=dict)  # the op's defaults where they differ from ours

    @property
    def usage(self) -> str:
        keys = "".join(f"[,{key}=...]" for key in self.options)
        return f"{self.name}:PATH{keys}"


TOKENIZER_KINDS: Registry[TokenizerKind] = Registry("tokenizer kind")


def register_tokenizer_kind(kind: TokenizerKind) -> TokenizerKind:
    TOKENIZER_KINDS.register(kind.name)(kind)
    return kind


def parse_value(spec: str, key: str, option: Option, value: Any) -> Any:
    """`value` (text from a spec, or a Python literal from a pp string) as the option's type, or one error line."""
    if isinstance(value, str) and option.kind is not str:
        text = value.strip().lower()
        if option.kind is bool and text in ("true", "false", "1", "0", "yes", "no"):
            value = text in ("true", "1", "yes")
        elif option.kind is int and text.lstrip("-").isdigit():
            value = int(text)
        elif not option.int_or_str:
            raise CheckpointError(f"tokenizer {spec!r}: {key}={value!r}: expected {option.kind.__name__}")
    if isinstance(value, bool) and option.kind is int or not isinstance(value, (option.kind, str)):
        raise CheckpointError(f"tokenizer {spec!r}: {key}={value!r}: expected {option.kind.__name__}")
    if option.choices and value not in option.choices:
        raise CheckpointError(f"tokenizer {spec!r}: {key}={value!r}: expected one of "
                              f"{', '.join(map(str, option.choices))}")
    return value


def resolve_options(spec: str, kind: TokenizerKind, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of `kind`: the given ones parsed, the others their defaults; an unknown key is an error."""
    unknown = sorted(set(given) - set(kind.options))
    if unknown:
        known = ", ".join(kind.options) or "none"
        raise CheckpointError(f"tokenizer {spec!r}: unknown option {unknown[0]!r} for {kind.name} (known: {known})")
    return {key: parse_value(spec, key, option, given[key]) if key in given else option.default
            for key, option in kind.options.items()}


def tokenizer_file(spec: str, kind: TokenizerKind, argument: str) -> Path:
    """The file a spec names, which must exist: checked before anything reads it."""
    if not argument:
        raise CheckpointError(f"tokenizer {spec!r}: {kind.name}: needs {kind.file} after the colon "
                              f"({kind.usage})")
    path = Path(argument).expanduser()
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise CheckpointError(f"tokenizer {spec!r}: {path}: {what} (expected {kind.file})")
    return path


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fit_context(spec: str, max_len: int | None, context_length: int) -> int:
    """The tokenised length: the model's text positions, or max_len when a spec states it (then it must be that)."""
    if max_len is None:
        return context_length
    if max_len != context_length:
        raise CheckpointError(f"tokenizer {spec!r}: max_len={max_len}, but the text tower has {context_length} "
                              "positions (big_vision's towers are built for the length they are trained on)")
    return max_len


def padded_batch(rows: list[list[int]]) -> Any:
    """Rows of one length -> a LongTensor (N, L)."""
    import torch

    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), -1)


class FileTokenizer:
    """The shared part of the file-backed kinds: the file's identity, the length, and the batch call."""

    kind: str
    context_length: int
    vocab_size: int

    def __init__(self, path: Path, context_length: int):
        self.path = path
        self.sha256 = file_sha256(path)
        self.context_length = context_length

    def encode_ids(self, text: str) -> list[int]:
        raise NotImplementedError

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> Any:
        if context_length not in (None, self.context_length):
            raise ValueError(f"this {self.kind} tokenizer pads to {self.context_length} tokens, its model's length")
        if isinstance(texts, str):
            texts = [texts]
        return padded_batch([self.encode_ids(text) for text in texts])

    def rules(self) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.kind, "path": str(self.path), "sha256": self.sha256, "vocab_size": self.vocab_size,
                "context_length": self.context_length, **self.rules()}
