"""`sentencepiece:PATH.model`: big_vision's `tokenize` preprocessing op (big_vision/pp/ops_text.py), which SigLIP and
LiT's SentencePiece text towers were trained and evaluated with, on the `sentencepiece` package.

What the op does to one caption, and so what this does:
  1. `lower=True` (its default): `tf.strings.lower`, which lower-cases ASCII letters only ("Ä" stays "Ä").
  2. SentencePiece encoding (tensorflow_text's SentencepieceTokenizer over the same model: the model's own
     normaliser, no sampling), with `</s>` appended unless `eos="none"` and `<s>` prepended if `add_bos`.
  3. To `max_len`: `eos="sticky"` cuts a longer sequence to its first max_len - 1 ids and keeps the final `</s>`;
     "yes" and "none" cut to the first max_len ids. Shorter sequences are padded with `pad_value` (an id, or a
     piece whose id is used: the op's default "<pad>"; an unknown piece is the unknown id, as the op finds it).
Defaults here are big_vision's image-text configs' (SigLIP's released models, the zero-shot evaluators'):
eos="sticky", pad_value=1, lower=True, add_bos=False; max_len is the tower's text length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclip_eval.errors import CheckpointError
from reclip_eval.models.tokenizers_registry import (
    FileTokenizer,
    Option,
    TokenizerKind,
    fit_context,
    register_tokenizer_kind,
)

# tf.strings.lower without an encoding: ASCII A-Z only (bytes >= 0x80 are left alone).
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class SentencePieceTokenizer(FileTokenizer):
    kind = "sentencepiece"

    def __init__(self, path: Path, *, context_length: int, spec: str, eos: str, pad_value: int | str, lower: bool,
                 add_bos: bool, max_len: int | None):
        super().__init__(path, fit_context(spec, max_len, context_length))
        try:
            import sentencepiece
        except ImportError:
            raise CheckpointError(f"tokenizer {spec!r}: the sentencepiece package is not installed "
                                  "(pip install 'reclip-eval[hf]')") from None
        processor = sentencepiece.SentencePieceProcessor()
        self._model = path.read_bytes()
        try:
            processor.LoadFromSerializedProto(self._model)
        except (RuntimeError, OSError, TypeError) as e:
            raise CheckpointError(f"tokenizer {spec!r}: {path} is not a SentencePiece model "
                                  f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        self._processor = processor
        self.vocab_size = processor.get_piece_size()
        if eos != "none" and processor.eos_id() < 0:
            raise CheckpointError(f"tokenizer {spec!r}: {path} has no end-of-sequence piece, which eos={eos!r} "
                                  "appends; give eos=none")
        if add_bos and processor.bos_id() < 0:
            raise CheckpointError(f"tokenizer {spec!r}: {path} has no beginning-of-sequence piece for add_bos")
        # A piece name is looked up as the op does (tensorflow_text's string_to_id: unknown -> the unknown id).
        self.pad_id = processor.piece_to_id(pad_value) if isinstance(pad_value, str) else pad_value
        if not 0 <= self.pad_id < self.vocab_size:
            raise CheckpointError(f"tokenizer {spec!r}: pad_value={pad_value!r} is no id of {path} "
                                  f"({self.vocab_size} pieces)")
        self.eos, self.lower, self.add_bos, self.pad_value = eos, lower, add_bos, pad_value
        self.rows: int | None = None  # the text embedding's rows, when fewer than the pieces (limit_to_rows)

    def limit_to_rows(self, rows: int) -> str | None:
        """Pair with an embedding of `rows` < pieces: None (and each caption checked) when every piece from `rows`
        on is a special one (control, user-defined, unused, byte) and the ids the rules add have rows; else why not."""
        used = {"pad_value": self.pad_id, "eos": self._processor.eos_id() if self.eos != "none" else -1,
                "add_bos": self._processor.bos_id() if self.add_bos else -1}
        beyond = [name for name, index in used.items() if index >= rows]
        if beyond:
            return f"the {beyond[0]} id {used[beyond[0]]} has no row"
        normal = _first_normal_piece(self._model, rows)
        if normal is not None:
            return f"piece {self._processor.id_to_piece(normal)!r} (id {normal}) is an ordinary piece without a row"
        self.rows = rows
        return None

    def encode_ids(self, text: str) -> list[int]:
        if self.lower:
            text = text.translate(ASCII_LOWER)
        ids = self._processor.encode(text, out_type=int, add_bos=self.add_bos, add_eos=self.eos != "none")
        if self.rows is not None and max(ids, default=0) >= self.rows:
            piece = self._processor.id_to_piece(max(ids))
            raise CheckpointError(f"caption {text!r}: its piece {piece!r} (id {max(ids)}) has no row in the text "
                                  f"embedding ({self.rows} rows; a special piece spelled out in the text)")
        length = self.context_length
        if self.eos == "sticky" and len(ids) >= length:
            return ids[:length - 1] + ids[-1:]  # too long: cut, but keep the final </s>
        ids = ids[:length]
        return ids + [self.pad_id] * (length - len(ids))

    def rules(self) -> dict[str, Any]:
        return {"op": "big_vision tokenize", "eos": self.eos, "pad_value": self.pad_value, "pad_id": self.pad_id,
                "eos_id": self._processor.eos_id(), "lower": "ascii" if self.lower else False,
                "add_bos": self.add_bos}


def _first_normal_piece(model: bytes, first: int) -> int | None:
    """The first id >= `first` whose piece is ordinary (SentencePiece's NORMAL or UNKNOWN type), None when all are
    special. The types are read from the model's protobuf (sentencepiece's own schema module; it needs protobuf):
    the processor tells control, unused and byte pieces, not user-defined ones."""
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:  # protobuf missing: the piece types cannot be read, so none counts as special
        return first
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model)
    types = sentencepiece_model_pb2.ModelProto.SentencePiece
    special = {types.CONTROL, types.USER_DEFINED, types.UNUSED, types.BYTE}
    return next((i for i in range(first, len(proto.pieces)) if proto.pieces[i].type not in special), None)


def _build(path: Path, *, context_length: int, spec: str, **options: Any) -> SentencePieceTokenizer:
    return SentencePieceTokenizer(path, context_length=context_length, spec=spec, **options)


SENTENCEPIECE = register_tokenizer_kind(TokenizerKind(
    name="sentencepiece", file="a SentencePiece .model file", build=_build,
    options={"eos": Option(str, "sticky", ("sticky", "yes", "none")), "pad_value": Option(int, 1, int_or_str=True),
             "lower": Option(bool, True), "add_bos": Option(bool, False), "max_len": Option(int, None)},
    pp_op="tokenize", pp_path_key="model",
    pp_positional=("max_len", "eos", "model", "lower", "sample_if_multi", "pad_value", "add_bos"),
    pp_ignored=("sample_if_multi", "inkey", "outkey"), pp_required=("max_len", "eos"),
    pp_defaults={"pad_value": "<pad>"}))
