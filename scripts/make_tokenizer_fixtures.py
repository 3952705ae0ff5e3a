"""Writes tests/fixtures/tokenizers/: a 64-piece SentencePiece model and a BERT WordPiece vocab.txt trained on the
synthetic shapes world's captions, and the ids big_vision's own preprocessing ops give for tricky captions (the
oracle tests/test_big_vision_tokenizers.py compares reclip_eval.models.tokenizers with).

The oracle needs TensorFlow, tensorflow_text and a big_vision checkout, none of which the project depends on: run it
in a separate environment, never the project's (it would pull another numpy):

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-text==2.21.1 sentencepiece tokenizers einops jax==0.10.2 flax==0.12.8 \
        ml_collections optax
    git clone https://github.com/google-research/big_vision /tmp/bv   # the fixtures: 0127fb6b
    PYTHONPATH=/tmp/bv:. /tmp/tfvenv/bin/python scripts/make_tokenizer_fixtures.py --big-vision /tmp/bv

The ops used: big_vision/pp/ops_text.py `tokenize` (SentencePiece) and big_vision/pp/proj/flaxformer/bert_ops.py
`bert_tokenize`, the op CLIPA's clipa_jax/transforms/bert_ops.py copies unchanged.
"""

from __future__ import annotations

import argparse
import io
import json
import random
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
# Random strings over the same character classes, mixed (seeded): 200 of them, for the first config of each kind.
FUZZ_POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    " \t\n\r\x0b\x0c\u00a0\u2009\u3000\u2028\u2029\u200b\u00ad\u200d\ufeff",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»—–…·•",
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïñòóôõöøùúûüýÿĀāĞğİıŁłŒœŠšŸŽž",
    "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩαβγδεζηθικλμνξοπρσςτυφχψωΆΈΉΊΌΎΏАБВЁЖЯабвёжя",
    "日本語中文漢字猫犬丸の是ひらがなカタカナ한국어ＡＢＣａｂｃ０１２ﬁﬂﬀﬃ²³½¼ⅠⅡⅷ℃№™ΩÅǄǅǆĲĳ",
    "\u0301\u0308\u0327\u0342\u05b0\u0610\u093c\x00\x01\x07\x1b\x1f\x7f\u0600\u06dd\u200e\u202e🙂⭐🚀👍🏽",
    "redbluegreencirclesquarestar ",
]
FUZZ_COUNT = 200
BERT_CONFIGS = [
    'bert_tokenize(inkey="texts", max_len=16, vocab_path="{vocab}")',  # CLIPA's
    'bert_tokenize(vocab_path="{vocab}", max_len=6, inkey="texts")',
    'bert_tokenize("{vocab}", 64, inkey="texts")',
]


def fuzz_texts(seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(FUZZ_COUNT):
        weights = [rng.random() for _ in FUZZ_POOLS]
        texts.append("".join(rng.choice(rng.choices(FUZZ_POOLS, weights)[0]) for _ in range(rng.randint(0, 40))))
    return texts


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


def oracle(big_vision: Path, commit: str | None) -> dict:
    import tensorflow as tf
    from big_vision.pp import builder, ops_general, ops_text  # noqa: F401  (register `keep`, `tokenize`)
    from big_vision.pp.proj.flaxformer import bert_ops  # noqa: F401  (registers `bert_tokenize`)

    def run(pp: str, texts: list[str] = TRICKY) -> list[dict]:
        pipeline = builder.get_preprocess_fn(pp, log_data=False)  # big_vision's own pp-string parser
        rows = []
        for text in texts:
            ids = pipeline({"texts": tf.constant(text)})["labels"].numpy()
            rows.append({"text": text, "ids": np.asarray(ids).astype(int).tolist()})
        return rows

    spm, vocab = OUT / SPM_NAME, OUT / VOCAB_NAME
    commit = subprocess.run(["git", "-C", str(big_vision), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or commit
    return {
        "big_vision_commit": commit, "tensorflow": tf.__version__,
        "command": "PYTHONPATH=BIG_VISION:. python scripts/make_tokenizer_fixtures.py --big-vision BIG_VISION",
        "sentencepiece": [{"pp": pp, "rows": run(pp.format(model=spm))} for pp in SPM_CONFIGS],
        "bert": [{"pp": pp, "rows": run(pp.format(vocab=vocab))} for pp in BERT_CONFIGS],
        "fuzz": [{"pp": pp, "rows": run(pp.format(model=spm, vocab=vocab), fuzz_texts())}
                 for pp in (SPM_CONFIGS[0], BERT_CONFIGS[0])],
    }


def _one_row_a_line(expected: dict) -> str:
    """JSON with one caption and its ids a line (reviewable diffs, a small file)."""
    def rows(config: dict) -> str:
        lines = ",\n".join("    " + json.dumps(row, ensure_ascii=False) for row in config["rows"])
        return f'  {{"pp": {json.dumps(config["pp"])}, "rows": [\n{lines}]}}'

    head = {k: v for k, v in expected.items() if not isinstance(v, list)}
    parts = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in head.items()]
    parts += [f' {json.dumps(k)}: [\n' + ",\n".join(rows(c) for c in v) + "]"
              for k, v in expected.items() if isinstance(v, list)]
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-vision", type=Path, required=True, help="a big_vision checkout (on PYTHONPATH too)")
    parser.add_argument("--commit", help="big_vision's commit, where --big-vision is an export, not a git checkout")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    lines = corpus()
    # Trained once: the committed models stay (SentencePiece's trainer is multi-threaded, not bit-reproducible);
    # delete them to train new ones.
    if not (OUT / SPM_NAME).exists():
        train_sentencepiece(lines, OUT / SPM_NAME)
    if not (OUT / VOCAB_NAME).exists():
        train_wordpiece(lines, OUT / VOCAB_NAME)
    expected = oracle(args.big_vision, args.commit)
    if not expected["big_vision_commit"]:
        parser.error("--big-vision is not a git checkout: give its commit with --commit")
    (OUT / EXPECTED_NAME).write_text(_one_row_a_line(expected), encoding="utf-8")
    configs = expected["sentencepiece"] + expected["bert"] + expected["fuzz"]
    print(f"wrote {OUT}: {sum(len(c['rows']) for c in configs)} oracle rows")


if __name__ == "__main__":
    main()
