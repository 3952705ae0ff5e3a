"""Writes tests/fixtures/tokenizers/: a 64-piece SentencePiece model and a BERT WordPiece vocab.txt trained on the
synthetic shapes world's captions, and the ids big_vision's own preprocessing ops give for tricky captions (the
oracle tests/test_big_vision_tokenizers.py compares reclip_eval.models.tokenizers with).

The oracle needs TensorFlow, tensorflow_text and a big_vision checkout, none of which the project depends on: run it
in a separate environment, never the project's (it would pull another numpy):

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-text==2.21.1 sentencepiece tokenizers einops jax==0.10.2 flax==0.12.8 \
        ml_collections optax
    git clone https://github.com/google-research/big_vision /tmp/bv   # fixtures made at 0127fb6b
    PYTHONPATH=/tmp/bv:. /tmp/tfvenv/bin/python scripts/make_tokenizer_fixtures.py --big-vision /tmp/bv

The ops used: big_vision/pp/ops_text.py `tokenize` (SentencePiece) and big_vision/pp/proj/flaxformer/bert_ops.py
`bert_tokenize`, the op CLIPA's clipa_jax/transforms/bert_ops.py copies unchanged.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
from pathlib import Path

import numpy as np

from reclip_eval.data.synth.captions import caption_scene
from reclip_eval.data.synth.world import class_names, sample_rng, sample_scene

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tokenizers"
SPM_NAME, VOCAB_NAME, EXPECTED_NAME = "shapes_spm64.model", "shapes_vocab.txt", "expected_ids.json"
LONG = "a large red striped circle and a small blue dotted square and a green star on a plain background " * 3
# Captions that exercise each rule: case (ASCII and not), punctuation, whitespace kinds, compatibility forms, marks,
# ignorable and control characters, CJK, emoji, the special tokens' spellings, over-long words, empty text, and
# lengths on each side of the cut.
TRICKY = [
    "", " ", "red circle", "A Red CIRCLE.", "a photo of a red circle!!", "  spaces   and\ttabs\nnew line ",
    "Äpfel ünd crème brûlée", "straße STRASSE", "ＦＵＬＬ width ｃｉｒｃｌｅ", "ﬁne ﬂag", "x² ½ ⅷ",
    "soft\u00adhyphen zero\u200bwidth join\u200dner", "日本語の猫 丸", "emoji 🙂 star ⭐", "İstanbul ΣΊΣΥΦΟΣ ς",
    "a\x00b\x07c\x0bd\x1fe", "don't stop—go (now) [sic] {x} «quoted» ¿qué?", "line\u2028sep para\u2029sep",
    "[CLS] [UNK] [PAD] ##ing <pad> </s> <unk>", "a" * 150, "ж" * 60, "circle" * 20, "red " * 6, "red " * 7,
    "red " * 8, "red " * 15, "red " * 16, "red " * 17, LONG, "The 36 classes: 6 colours x 6 shapes, 1,234 images.",
    "tab\u00a0nbsp\u3000ideographic\u2009thin", "Ǆemal ǅ ǆ", "Ω ohm Ω Å angstrom", "ﾊﾝｶｸ ｶﾀｶﾅ",
]
SPM_CONFIGS = [  # pp strings as big_vision configs write them ({model}: the fixture's path)
    'tokenize(max_len=16, model="{model}", eos="sticky", pad_value=1, inkey="texts")',  # SigLIP's
    'tokenize(8, "sticky", "{model}", pad_value=1, inkey="texts")',
    'tokenize(max_len=8, model="{model}", eos="yes", pad_value=0, inkey="texts")',
    'tokenize(max_len=8, model="{model}", eos="none", inkey="texts")',  # pad_value "<pad>", the op's default
    'tokenize(max_len=12, model="{model}", eos="sticky", pad_value="</s>", lower=False, inkey="texts")',
    'keep("texts")|tokenize(max_len=12, model="{model}", eos="yes", pad_value=2, inkey="texts")',
]
BERT_CONFIGS = [
    'bert_tokenize(inkey="texts", max_len=16, vocab_path="{vocab}")',  # CLIPA's
    'bert_tokenize(vocab_path="{vocab}", max_len=6, inkey="texts")',
    'bert_tokenize("{vocab}", 64, inkey="texts")',
]


def corpus(count: int = 4000) -> list[str]:
    """The synthetic world's captions (both grammars) and its class names."""
    lines = [name for _, name in class_names()]
    for index in range(count):
        rng = sample_rng(0, "train", index)  # the training captions
        scene = sample_scene(rng, with_texture=bool(index % 2))
        lines.append(caption_scene(rng, scene, concise=bool(index % 3 == 0)))
    return lines


def train_sentencepiece(lines: list[str], path: Path) -> None:
    import sentencepiece

    model = io.BytesIO()
    # T5's id layout (pad 0, </s> 1, <unk> 2, no <s>), as big_vision's c4_en / mc4 models have, so pad_value=1 is
    # the end-of-sequence id as in SigLIP's configs. hard_vocab_limit off: 64 pieces from a small alphabet.
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=64, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, hard_vocab_limit=False,
        normalization_rule_name="nmt_nfkc", minloglevel=2)
    path.write_bytes(model.getvalue())


def train_wordpiece(lines: list[str], path: Path) -> None:
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(lines, vocab_size=120, min_frequency=2,
                                  special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    path.write_text("".join(f"{token}\n" for token, _ in vocab), encoding="utf-8")


def oracle(big_vision: Path) -> dict:
    import tensorflow as tf
    from big_vision.pp import builder, ops_general, ops_text  # noqa: F401  (register `keep`, `tokenize`)
    from big_vision.pp.proj.flaxformer import bert_ops  # noqa: F401  (registers `bert_tokenize`)

    def run(pp: str) -> list[dict]:
        pipeline = builder.get_preprocess_fn(pp, log_data=False)  # big_vision's own pp-string parser
        rows = []
        for text in TRICKY:
            ids = pipeline({"texts": tf.constant(text)})["labels"].numpy()
            rows.append({"text": text, "ids": np.asarray(ids).astype(int).tolist()})
        return rows

    spm, vocab = OUT / SPM_NAME, OUT / VOCAB_NAME
    commit = subprocess.run(["git", "-C", str(big_vision), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "0127fb6b337ee2a27bf4e54dea79cff176527356"
    return {
        "big_vision_commit": commit, "tensorflow": tf.__version__,
        "command": "PYTHONPATH=BIG_VISION:. python scripts/make_tokenizer_fixtures.py --big-vision BIG_VISION",
        "sentencepiece": [{"pp": pp, "rows": run(pp.format(model=spm))} for pp in SPM_CONFIGS],
        "bert": [{"pp": pp, "rows": run(pp.format(vocab=vocab))} for pp in BERT_CONFIGS],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-vision", type=Path, required=True, help="a big_vision checkout (on PYTHONPATH too)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    lines = corpus()
    train_sentencepiece(lines, OUT / SPM_NAME)
    train_wordpiece(lines, OUT / VOCAB_NAME)
    expected = oracle(args.big_vision)
    (OUT / EXPECTED_NAME).write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}: {sum(len(c['rows']) for c in expected['sentencepiece'] + expected['bert'])} oracle rows")


if __name__ == "__main__":
    main()
