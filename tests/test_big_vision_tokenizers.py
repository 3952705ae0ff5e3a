"""big_vision's and CLIPA's tokenizers (issue 34 item 2): `--tokenizer sentencepiece:PATH.model` and
`--tokenizer bert:PATH/vocab.txt` give the ids big_vision's own preprocessing ops give.

The oracle is tests/fixtures/tokenizers/expected_ids.json, written by scripts/make_tokenizer_fixtures.py from
big_vision's `tokenize` and `bert_tokenize` ops running in TensorFlow (pp strings parsed by big_vision's own
builder), over a 64-piece SentencePiece model and a WordPiece vocab.txt trained on the synthetic world's captions.
"""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reclip_eval.cli.main import main
from reclip_eval.data.synth.export import synthesize
from reclip_eval.errors import ReclipError
from reclip_eval.eval.tasks import load_task
from reclip_eval.flax_models.clip import init_params
from reclip_eval.flax_models.convert import flatten
from reclip_eval.models.config import CLIPConfig, TextConfig, VisionConfig
from reclip_eval.models.tokenizers import CLIP_VOCAB, build_tokenizer, tokenizer_for_tree
from reclip_eval.zoo.resolve import load_adapter

FIXTURES = Path(__file__).parent / "fixtures" / "tokenizers"
SPM, VOCAB = FIXTURES / "shapes_spm64.model", FIXTURES / "shapes_vocab.txt"
EXPECTED = json.loads((FIXTURES / "expected_ids.json").read_text(encoding="utf-8"))
# Tricky captions x each config, and 200 seeded random strings (mixed scripts, marks, controls, emoji) x SigLIP's and
# CLIPA's configs.
CASES = [(kind, config["pp"], row) for kind in ("sentencepiece", "bert", "fuzz") for config in EXPECTED[kind]
         for row in config["rows"]]
TOK_LAST = {"image": {"pool_type": "tok"}, "text": {"pool_type": "last"}}
TRICKY_LONG = "a large red striped circle and a small blue dotted square and a green star on a plain background " * 3


def _pp(pp: str) -> str:
    return pp.format(model=SPM, vocab=VOCAB)


@pytest.mark.parametrize(("kind", "pp", "row"), CASES,
                         ids=[f"{kind}-{pp[:24]}-{i}" for i, (kind, pp, _) in enumerate(CASES)])
def test_ids_equal_big_visions_own_ops(kind, pp, row):
    length = len(row["ids"])
    tokenizer = build_tokenizer(_pp(pp), context_length=length)
    assert tokenizer(row["text"])[0].tolist() == row["ids"]


def test_the_oracle_covers_the_rules():
    """The fixture exercises what the rules decide, so equality with it means something: a sticky cut keeps </s>,
    padding, [CLS] first, case folding (ß -> ss, full-width forms), lower-casing, [UNK]."""
    siglip = {row["text"]: row["ids"] for row in EXPECTED["sentencepiece"][0]["rows"]}
    eos = siglip[""][0]
    assert any(ids[-1] == eos and eos not in ids[:-1] for ids in siglip.values())  # cut, </s> kept
    assert any(ids.count(eos) > 1 for ids in siglip.values())  # padded with pad_value 1 (= </s>)
    clipa = {row["text"]: row["ids"] for row in EXPECTED["bert"][0]["rows"]}
    circle = clipa["red circle"][1:clipa["red circle"].index(0)]
    assert clipa["A Red CIRCLE."][2:2 + len(circle)] == circle  # lower-cased
    strasse = clipa["straße STRASSE"][1:clipa["straße STRASSE"].index(0)]
    assert strasse[:len(strasse) // 2] == strasse[len(strasse) // 2:]  # case folding: ß -> ss
    assert all(ids[0] == clipa[""][0] for ids in clipa.values()) and 0 not in clipa[TRICKY_LONG][1:]  # [CLS]; cut
    assert any(1 in ids for ids in clipa.values())  # [UNK]


def test_cli_specs_equal_the_configs_pp_strings():
    """`sentencepiece:PATH` defaults to SigLIP's pp (eos sticky, pad_value 1); `bert:PATH` is CLIPA's op."""
    siglip, clipa = EXPECTED["sentencepiece"][0], EXPECTED["bert"][0]
    assert "eos=\"sticky\", pad_value=1" in siglip["pp"] and "max_len=16" in siglip["pp"]
    spm, bert = (build_tokenizer(f"sentencepiece:{SPM}", context_length=16),
                 build_tokenizer(f"bert:{VOCAB}", context_length=16))
    for ours, config in ((spm, siglip), (bert, clipa)):
        texts = [row["text"] for row in config["rows"]]
        assert ours(texts).tolist() == [row["ids"] for row in config["rows"]]
    explicit = build_tokenizer(f"sentencepiece:{SPM},eos=yes,pad_value=0", context_length=8)
    oracle = next(c for c in EXPECTED["sentencepiece"] if 'eos="yes", pad_value=0' in c["pp"])
    assert explicit([r["text"] for r in oracle["rows"]]).tolist() == [r["ids"] for r in oracle["rows"]]


def test_describe_records_kind_file_vocabulary_and_rules():
    described = build_tokenizer(f"sentencepiece:{SPM}", context_length=16).describe()
    assert described["sha256"] == hashlib.sha256(SPM.read_bytes()).hexdigest()
    assert (described["name"], described["vocab_size"], described["eos"], described["pad_id"]) == \
        ("sentencepiece", 64, "sticky", 1)
    bert = build_tokenizer(f"bert:{VOCAB}", context_length=16).describe()
    assert bert["name"] == "bert" and bert["vocab_size"] == len(VOCAB.read_text().splitlines())


BAD = [
    ("wordpiece:{vocab}", ("unknown tokenizer kind 'wordpiece'", "sentencepiece")),
    ("sentencepiece:{tmp}/missing.model", ("missing.model", "no such file", "SentencePiece")),
    ("sentencepiece:{vocab}", ("shapes_vocab.txt", "is not a SentencePiece model")),
    ("sentencepiece:{tmp}", ("a folder, not a file",)),
    ("bert:{no_cls}", ("no [CLS]",)),
    ("bert:{pad_second}", ("[PAD] is line 2", "pads with id 0")),
    ("bert:{dup}", ("line", "each token once")),
    ("bert:{spm}", ("is not UTF-8",)),
    ("sentencepiece:{spm},eos=maybe", ("eos='maybe'", "sticky, yes, none")),
    ("sentencepiece:{spm},pad=1", ("unknown option 'pad'",)),
    ("sentencepiece:{spm},pad_value=<nope>", ()),  # an unknown piece is <unk>, as the op looks it up: accepted
    ("sentencepiece:{spm},pad_value=64", ("pad_value=64", "64 pieces")),
    ("sentencepiece:{spm},max_len=64", ("max_len=64", "16 positions")),
    ("bert", ("expected clip, bert:PATH", "sentencepiece:PATH")),
    ("bert:", ("needs a BERT WordPiece vocab.txt after the colon",)),
    ('tokenize(max_len=16, model="c4_en", eos="sticky")', ("c4_en", "gs://")),
    ('tokenize(max_len=16, model="{spm}")', ("needs eos",)),
    ('lower|tokenize(max_len=16, model="{spm}", eos="sticky")', ("'lower'",)),
    ('tokenize(max_len=16, model="{spm}", eos="sticky", wat=1)', ("unknown option 'wat'",)),
]


@pytest.mark.parametrize(("spec", "expect"), BAD, ids=[b[0][:40] for b in BAD])
def test_bad_specs_are_one_line_errors(spec, expect, tmp_path):
    lines = VOCAB.read_text().splitlines()
    variants = {"no_cls": [line for line in lines if line != "[CLS]"], "dup": [*lines, lines[7]],
                "pad_second": [lines[1], lines[0], *lines[2:]]}
    paths = {"vocab": VOCAB, "spm": SPM, "tmp": tmp_path}
    for name, variant in variants.items():
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_text("\n".join(variant) + "\n")
    if not expect:
        assert build_tokenizer(spec.format(**paths), context_length=16).pad_id == 2  # <unk>'s id in the fixture
        return
    with pytest.raises(ReclipError) as error:
        build_tokenizer(spec.format(**paths), context_length=16)
    message = str(error.value)
    assert "\n" not in message
    for part in expect:
        assert part in message


def test_vocabulary_must_fit_the_embedding():
    with pytest.raises(ReclipError, match=r"has 63 rows, but tokenizer .* has 64 tokens"):
        tokenizer_for_tree(f"sentencepiece:{SPM}", rows=63, context_length=16, source="t.npz")
    # More rows than ids: CLIPA's towers (32,000 rows) with bert-base's 30,522-line vocab.txt.
    assert tokenizer_for_tree(f"sentencepiece:{SPM}", rows=100, context_length=16, source="t.npz").vocab_size == 64
    with pytest.raises(ReclipError, match=r"64 rows, not CLIP's BPE .*--tokenizer sentencepiece:PATH.model or bert:"):
        tokenizer_for_tree(None, rows=64, context_length=16, source="t.npz")
    assert tokenizer_for_tree(None, rows=CLIP_VOCAB, context_length=16, source="t.npz").describe() == \
        {"name": "clip-bpe", "context_length": 16}


def _with_pieces(tmp_path: Path, pieces: list[str], kind: str) -> Path:
    """The fixture model with `pieces` appended, as T5's mc4 model holds its <extra_id_N> (big_vision's
    ops_text._add_pieces appends user-defined pieces the same way)."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto.FromString(SPM.read_bytes())
    piece_type = getattr(sentencepiece_model_pb2.ModelProto.SentencePiece, kind)
    for piece in pieces:
        proto.pieces.append(sentencepiece_model_pb2.ModelProto.SentencePiece(piece=piece, score=0.0, type=piece_type))
    path = tmp_path / f"{kind.lower()}.model"
    path.write_bytes(proto.SerializeToString())
    return path


def test_special_pieces_beyond_the_embedding_are_accepted_and_refused_when_spelled_out(tmp_path):
    """SigLIP i18n: 250,000 rows, mc4's model has 100 <extra_id_N> pieces after them."""
    extra = _with_pieces(tmp_path, ["<extra_id_0>", "<extra_id_1>"], "USER_DEFINED")
    tokenizer = tokenizer_for_tree(f"sentencepiece:{extra}", rows=64, context_length=16, source="t.npz")
    assert tokenizer.vocab_size == 66
    assert tokenizer(["a red circle"]).tolist() == build_tokenizer(f"sentencepiece:{SPM}", context_length=16)(
        ["a red circle"]).tolist()
    with pytest.raises(ReclipError, match=r"'<extra_id_1>' \(id 65\) has no row in the text embedding \(64 rows"):
        tokenizer(["a <extra_id_1> circle"])
    ordinary = _with_pieces(tmp_path, ["▁hexagonal"], "NORMAL")
    with pytest.raises(ReclipError, match=r"64 rows, but tokenizer .* has 65 tokens \(piece '▁hexagonal' \(id 64\) is "
                                          r"an ordinary piece"):
        tokenizer_for_tree(f"sentencepiece:{ordinary}", rows=64, context_length=16, source="t.npz")
    with pytest.raises(ReclipError, match=r"the pad_value id 64 has no row"):
        tokenizer_for_tree(f"sentencepiece:{extra},pad_value=64", rows=64, context_length=16, source="t.npz")


def _tree(tmp_path: Path, vocab_size: int) -> tuple[Path, Path]:
    """A big_vision tree (class-token image tower, 'last' text pool) with a `vocab_size`-row text embedding."""
    numerics = {"activation": "gelu_tanh", "layer_norm_eps": 1e-6}
    config = CLIPConfig(
        embed_dim=24,
        vision=VisionConfig(image_size=32, patch_size=8, width=32, layers=2, heads=2, pool="cls",
                            class_token_position=False, head_bias=True, **numerics),
        text=TextConfig(context_length=16, vocab_size=vocab_size, width=32, layers=2, heads=2, pool="last",
                        head_bias=True, **numerics))
    path = tmp_path / f"vocab{vocab_size}.npz"
    np.savez(path, **{name: np.asarray(leaf) for name, leaf in flatten(init_params(config, 0))})
    model_config = tmp_path / "model_config.json"
    model_config.write_text(json.dumps(TOK_LAST))
    return path, model_config


def test_tree_with_its_own_vocabulary_is_evaluated_through_the_cli(tmp_path, capsys):
    tree, model_config = _tree(tmp_path, vocab_size=64)
    task = load_task("shapes-zeroshot")
    synthesize(tmp_path / "data", dataclasses.replace(task.synth, zeroshot_per_class=2), sets=[task.synth_set],
               workers=0)
    capsys.readouterr()  # the data generator's progress
    base = ["--model", f"big_vision:{tree}", "--model-config", str(model_config), "--task", "shapes-zeroshot",
            "--data-dir", str(tmp_path / "data"), "--workers", "0", "--output", str(tmp_path / "results")]
    assert main(base) == 2  # no --tokenizer: refused, naming what to give
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "64 entries" in error[0] and "--tokenizer sentencepiece:" in error[0]
    assert main([*base, "--tokenizer", f"bert:{VOCAB}"]) == 2  # 120 tokens, 64 rows
    assert "64 rows" in capsys.readouterr().err

    assert main([*base, "--tokenizer", f"sentencepiece:{SPM}"]) == 0
    (written,) = (tmp_path / "results").rglob("*.json")
    results = json.loads(written.read_text())
    assert results["counts"]["images_evaluated"] == 72
    assert results["model"]["tokenizer"]["name"] == "sentencepiece"
    assert results["model"]["tokenizer"]["vocab_size"] == 64 and results["model"]["tokenizer"]["eos"] == "sticky"

    # The texts are embedded from the tokenizer's ids, uncut (padding is not CLIP's).
    adapter = load_adapter(f"big_vision:{tree}", model_config=TOK_LAST, tokenizer=f"sentencepiece:{SPM}")
    prompts = ["a photo of a red circle.", "A BLUE STAR"]
    tokens = build_tokenizer(f"sentencepiece:{SPM}", context_length=16)(prompts)
    assert torch.equal(adapter.text_tokens(prompts), tokens)
    with torch.no_grad():
        expected = adapter.model.encode_text(tokens, normalize=True).numpy()
    np.testing.assert_allclose(adapter.encode_texts(prompts), expected, rtol=0, atol=1e-6)


def test_tokenizer_applies_to_big_vision_trees_only():
    with pytest.raises(ReclipError, match="--tokenizer applies to big_vision:PATH models only"):
        load_adapter("openclip:ViT-B-32", random_init=True, tokenizer=f"sentencepiece:{SPM}")


def test_bert_tree_embeds_alike_on_both_backends_from_a_spec_or_the_configs_pp_string(tmp_path):
    tree, _ = _tree(tmp_path, vocab_size=130)  # more rows than the vocabulary's 120 lines, as CLIPA's towers have
    pp = EXPECTED["bert"][0]["pp"].format(vocab=VOCAB)
    texts = ["a red circle.", "A BLUE STAR!!", ""]
    torch_adapter = load_adapter(f"big_vision:{tree}", model_config=TOK_LAST, tokenizer=f"bert:{VOCAB}")
    jax_adapter = load_adapter(f"big_vision:{tree}", model_config=TOK_LAST, tokenizer=pp, backend="jax")
    np.testing.assert_allclose(jax_adapter.encode_texts(texts), torch_adapter.encode_texts(texts), rtol=0, atol=1e-5)
    assert torch.equal(torch_adapter.text_tokens(texts), build_tokenizer(pp, context_length=16)(texts))
    assert jax_adapter.describe()["tokenizer"]["name"] == "bert"
    assert jax_adapter.describe()["tokenizer"]["vocab_size"] == 120
