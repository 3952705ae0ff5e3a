"""Golden fixtures for the big_vision / CLIPA import (issue #34 item 4), made by those projects' OWN model code.

Upstream code used (read-only exports; nothing of it is copied into this repository):
    google-research/big_vision  0127fb6b337ee2a27bf4e54dea79cff176527356  (models/proj/image_text/two_towers.py,
                                models/vit.py, models/proj/image_text/text_transformer.py, utils.py)
    UCSC-VLAA/CLIPA             38005085ebb5566958c9b14d4bf13a1f276355c4  (clipa_jax/models/two_towers.py, vit.py,
                                text_transformer.py, clipa_jax/helpers/utils.py)

Command (from the repository root, with this project's venv, which has jax and flax):
    git --git-dir=BIG_VISION_GIT archive 0127fb6b | tar -x -C /tmp/bvg/bv
    git --git-dir=CLIPA_GIT archive 38005085 clipa_jax/*.py clipa_jax/configs | tar -x -C /tmp/bvg/clipa
    pip install --no-deps --target /tmp/bvg/deps einops ml_collections     # pure python, imported by their utils
    python scripts/make_big_vision_golden.py --big-vision /tmp/bvg/bv --clipa /tmp/bvg/clipa/clipa_jax \
        --deps /tmp/bvg/deps --out tests/fixtures/big_vision_golden

Each case is a small two-tower model built and randomly initialised by the upstream `two_towers.Model` (every leaf
then perturbed with seeded noise, because the upstream inits put zeros in heads, class tokens and biases, which would
let a wrong pooling or a dropped bias pass), saved as the project saves checkpoints (big_vision: the `.npz` of
`utils.tree_flatten_with_names(params)` as its released checkpoints are; CLIPA: `helpers.utils.save_checkpoint` of
`{"params", "opt", "chrono"}` as its main.py writes them), read back with the project's own `load_params`, and run
on fixed inputs. Expected outputs are the upstream forward's: image / text embeddings as `two_towers` returns them
(L2-normalised) and the towers' outputs before the normalisation.

What is NOT upstream code, and why:
  * shims: `tensorflow.io.gfile` mapped onto the local file system (their utils import it for file I/O only), and
    einops / ml_collections installed beside (see the command). No model code is patched.
  * token ids. big_vision's and CLIPA's tokenize ops are TensorFlow graphs (tensorflow_text); TensorFlow is not
    installed here. The ids are computed with the same libraries those ops wrap, following each op's rules:
      sentencepiece (big_vision pp/ops_text.py `tokenize`, SigLIP's settings): ASCII lower-case, pieces + </s>,
      eos="sticky" (a long text is cut to max_len-1 pieces and keeps its </s>), padded with pad_value=1 (= </s>);
      bert (CLIPA transforms/bert_ops.py `bert_tokenize`): BERT basic + WordPiece, lower-cased, cut / zero padded
      to max_len-1 wordpieces, [CLS] prepended, no [SEP];
      clip-bpe (no big_vision op exists): open_clip's SimpleTokenizer, <start> ... <end>, zero padded, as this
      project's own tokenizer. The captions are plain ASCII, so TF's ASCII-only lower-casing equals str.lower().
  * the CLIP-BPE cases' embedding tables (49,408 rows) are zero except the rows the fixed token ids use (those rows
    alone reach the outputs), so the compressed .npz stays small.
  * the tiny SentencePiece model and WordPiece vocab.txt are trained / written here from synthetic captions.
  * parameters are rounded to bfloat16-representable float32 values (see `perturb`) and jax runs at
    jax_default_matmul_precision="highest" (float32 matmuls on every platform), so the expected outputs do not
    depend on a backend's reduced-precision default.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import types
from pathlib import Path

import numpy as np

BIG_VISION_COMMIT = "0127fb6b337ee2a27bf4e54dea79cff176527356"
CLIPA_COMMIT = "38005085ebb5566958c9b14d4bf13a1f276355c4"
IMAGE_SIZE, PATCH, MAX_LEN = 32, 8, 16
BV_PREPROCESS = "value_range(-1, 1): x / 255 * 2 - 1 (big_vision's eval pp)"
CLIPA_PREPROCESS = "vgg_value_range: (x - 255 * (0.485, 0.456, 0.406)) / (255 * (0.229, 0.224, 0.225)) (CLIPA's eval pp)"

# Fixed inputs: a capitalised caption, punctuation, a word the tiny vocabularies split or do not know, and one
# longer than MAX_LEN tokens (truncation and the end-token rule).
TEXTS = [
    "a photo of a dog.",
    "A Red Car parked near the old bridge",
    "two zebras, grazing!",
    "a very long caption about a small brown dog running across a green field with a red ball in its mouth today",
]
N_IMAGES = 3

# image: (pool_type, posemb); text: pool_type; tokenizer kind; extras. Every image pool x posemb for each codebase,
# every text pool with every tokenizer kind of that codebase.
CASES = [
    # name, codebase, image pool, posemb, text pool, tokenizer, extra
    ("bv_map_learn_last_sp", "big_vision", "map", "learn", "last", "sentencepiece", {"siglip": True}),
    ("bv_map_sincos2d_first_bpe", "big_vision", "map", "sincos2d", "first", "clip-bpe", {"siglip": True}),
    ("bv_tok_learn_mean_sp", "big_vision", "tok", "learn", "mean", "sentencepiece", {"scan": True}),
    ("bv_tok_sincos2d_last_bpe", "big_vision", "tok", "sincos2d", "last", "clip-bpe", {}),
    ("bv_gap_learn_first_sp", "big_vision", "gap", "learn", "first", "sentencepiece", {"explicit": True}),
    ("bv_gap_sincos2d_mean_bpe", "big_vision", "gap", "sincos2d", "mean", "clip-bpe", {}),
    ("bv_0_learn_last_bpe", "big_vision", "0", "learn", "last", "clip-bpe", {"explicit": True}),
    ("bv_0_sincos2d_first_sp", "big_vision", "0", "sincos2d", "first", "sentencepiece", {}),
    ("bv_gap_learn_mean_sp", "big_vision", "gap", "learn", "mean", "sentencepiece", {"siglip": True}),
    ("bv_tok_learn_last_sp", "big_vision", "tok", "learn", "last", "sentencepiece", {}),
    ("clipa_tok_sincos2d_last_bert", "clipa", "tok", "sincos2d", "last", "bert", {"opt": True}),
    ("clipa_tok_learn_last_bert", "clipa", "tok", "learn", "last", "bert", {}),
    ("clipa_gap_learn_tok_bert", "clipa", "gap", "learn", "tok", "bert", {}),
    ("clipa_gap_sincos2d_last_bert", "clipa", "gap", "sincos2d", "last", "bert", {}),
    ("clipa_0_learn_gap_bert", "clipa", "0", "learn", "gap", "bert", {}),
    ("clipa_0_sincos2d_last_bert", "clipa", "0", "sincos2d", "last", "bert", {}),
    ("clipa_map_learn_last_bert", "clipa", "map", "learn", "last", "bert", {}),
    ("clipa_map_sincos2d_tok_bert", "clipa", "map", "sincos2d", "tok", "bert", {}),
]


def install_shims(big_vision: Path, clipa: Path, deps: Path) -> None:
    """Import paths for the exports, and a file-system `tensorflow.io.gfile` (their utils use it for I/O only)."""
    import flax.io  # noqa: F401  (imported before the shim: flax picks its own I/O by whether tensorflow exists)
    import flax.training.checkpoints  # noqa: F401
    import open_clip.tokenizer  # noqa: F401  (likewise torch's import machinery looks tensorflow up)

    sys.path[:0] = [str(deps), str(big_vision), str(clipa)]
    import jax

    # CLIPA's utils call jax's top-level tree aliases, removed from jax since; the same functions under jax.tree_util.
    for alias in ("tree_flatten", "tree_unflatten", "tree_map", "tree_leaves", "tree_structure"):
        if not hasattr(jax, alias):
            setattr(jax, alias, getattr(jax.tree_util, alias))
    gfile = types.ModuleType("tensorflow.io.gfile")
    gfile.GFile = open
    gfile.exists = os.path.exists
    gfile.makedirs = lambda p: os.makedirs(p, exist_ok=True)
    gfile.rename = lambda src, dst, overwrite=False: os.replace(src, dst)
    tf_io = types.ModuleType("tensorflow.io")
    tf_io.gfile = gfile
    tf = types.ModuleType("tensorflow")
    tf.io = tf_io
    sys.modules.update({"tensorflow": tf, "tensorflow.io": tf_io, "tensorflow.io.gfile": gfile})


def caption_corpus(n: int = 400) -> list[str]:
    rng = np.random.default_rng(0)
    colours = ["red", "green", "blue", "brown", "black", "white", "small", "big", "old", "young"]
    things = ["dog", "cat", "car", "bridge", "field", "house", "tree", "ball", "bird", "boat", "man", "woman"]
    verbs = ["running", "sitting", "parked", "standing", "playing", "flying", "sleeping", "grazing"]
    places = ["in a field", "near the river", "on the street", "across the bridge", "in its mouth", "today"]
    out = []
    for _ in range(n):
        words = ["a", str(rng.choice(colours)), str(rng.choice(things)), str(rng.choice(verbs)),
                 str(rng.choice(places))]
        if rng.random() < 0.3:
            words = ["a photo of"] + words
        out.append(" ".join(words) + str(rng.choice([".", "", "!", ","])))
    return out


def train_sentencepiece(folder: Path) -> Path:
    import shutil
    import tempfile

    import sentencepiece as spm

    # Trained in a scratch folder under relative names: the model records its trainer's input and prefix paths,
    # which would otherwise make the file differ from run to run.
    with tempfile.TemporaryDirectory() as scratch:
        cwd = os.getcwd()
        os.chdir(scratch)
        try:
            Path("corpus.txt").write_text("\n".join(caption_corpus()) + "\n")
            # T5's id convention, which big_vision's SentencePiece models have: <pad> 0, </s> 1, <unk> 2, no <s>.
            spm.SentencePieceTrainer.train(
                input="corpus.txt", model_prefix="spm", vocab_size=64, model_type="unigram", pad_id=0, eos_id=1,
                unk_id=2, bos_id=-1, num_threads=1, character_coverage=1.0, seed_sentencepiece_size=2000,
                normalization_rule_name="identity", minloglevel=2)  # identity: no 200 kB NFKC table in a tiny file
            shutil.copyfile("spm.model", folder.resolve() / "spm.model")
        finally:
            os.chdir(cwd)
    return folder / "spm.model"


def write_vocab_txt(folder: Path) -> Path:
    """A tiny WordPiece vocabulary: BERT's special tokens, whole words of the corpus except a few (split into
    letters or unknown), single letters and their ## continuations, punctuation."""
    words = sorted({w.strip(".,!") for c in caption_corpus() for w in c.lower().split()} - {"", "brown", "dogs"})
    letters = list("abcdefghijklmnopqrstuvwxyz")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!"] + letters + words + ["##s"] + \
        [f"##{c}" for c in letters if c != "s"]
    vocab = list(dict.fromkeys(vocab))
    path = folder / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    return path


def tokenize(kind: str, texts: list[str], tokenizers: dict[str, Path]) -> np.ndarray:
    if kind == "sentencepiece":
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(tokenizers["sentencepiece"]))
        eos, pad = sp.eos_id(), 1
        rows = []
        for text in texts:
            ids = sp.encode(text.lower()) + [eos]
            ids = ids[:MAX_LEN - 1] + ids[-1:] if len(ids) >= MAX_LEN else ids + [pad] * (MAX_LEN - len(ids))
            rows.append(ids)
        return np.asarray(rows, np.int32)
    if kind == "bert":
        from tokenizers import BertWordPieceTokenizer

        tok = BertWordPieceTokenizer(str(tokenizers["bert"]), lowercase=True)
        vocab = tokenizers["bert"].read_text().split("\n")
        cls = vocab.index("[CLS]")
        rows = []
        for text in texts:
            ids = tok.encode(text, add_special_tokens=False).ids[:MAX_LEN - 1]
            rows.append([cls] + ids + [0] * (MAX_LEN - 1 - len(ids)))
        return np.asarray(rows, np.int32)
    if kind == "clip-bpe":
        from open_clip.tokenizer import SimpleTokenizer

        return SimpleTokenizer(context_length=MAX_LEN)(texts).numpy().astype(np.int32)
    raise ValueError(kind)


def model_config(case: tuple, vocab_size: int) -> dict:
    """The `config.model` of the case, in the codebase's own key names (what its configs/*.py would set)."""
    name, codebase, image_pool, posemb, text_pool, _tok, extra = case
    if codebase == "big_vision":
        if extra.get("explicit"):  # dimensions spelled out instead of a variant name
            shape = {"width": 32, "depth": 2, "mlp_dim": 64, "num_heads": 4}
            image = {"patch_size": [PATCH, PATCH], **shape}
            text = dict(shape)
        else:  # vit.decode_variant's "mu": width 32, depth 1, mlp 128, 2 heads
            image, text = {"variant": f"mu/{PATCH}"}, {"variant": "mu"}
        image.update(pool_type=image_pool, posemb=posemb)
        text.update(pool_type=text_pool, vocab_size=vocab_size)
        if extra.get("scan"):
            image["scan"] = text["scan"] = True
        config = {"image_model": "vit", "text_model": "proj.image_text.text_transformer", "image": image,
                  "text": text, "out_dim": [24, 24], "temperature_init": 10.0}
        if extra.get("siglip"):
            config["bias_init"] = -10.0
        return config
    # CLIPA: variants are big (B = 512 wide); the tiny tower is spelled out. Its configs name the text tower
    # module "text_transformer" and leave vocab_size at the model default unless told.
    shape = {"width": 32, "depth": 2, "mlp_dim": 64, "num_heads": 2}
    return {"image_model": "vit", "text_model": "text_transformer",
            "image": {"patch_size": [PATCH, PATCH], **shape, "pool_type": image_pool, "posemb": posemb,
                      "head_zeroinit": False},
            "text": {**shape, "pool_type": text_pool, "vocab_size": vocab_size, "head_zeroinit": False},
            "out_dim": [24, 24], "temperature_init": 1 / 0.07}


def perturb(params, seed: int):
    """Every leaf plus N(0, 0.05) noise (the log temperature and bias kept): zero-initialised heads, class tokens,
    biases and unit norm scales would hide a wrong pooling, a dropped bias or a misplaced norm. Values are then
    rounded to bfloat16-representable float32 (still float32, and the forward runs on exactly these values): the
    zero low mantissa bytes let the compressed .npz shrink by about half."""
    import jax
    import ml_dtypes

    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    out = []
    for path, leaf in leaves:
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        leaf = np.asarray(leaf, np.float32)
        if name not in ("t", "b"):
            leaf = leaf + rng.normal(0, 0.05, leaf.shape).astype(np.float32)
        out.append(leaf.astype(ml_dtypes.bfloat16).astype(np.float32))
    return jax.tree_util.tree_unflatten(treedef, out)


def zero_unused_rows(params, tokens: np.ndarray):
    """The CLIP-BPE table: rows the fixed inputs never index cannot reach the outputs; zeroed they compress."""
    table = np.asarray(params["txt"]["Embed_0"]["embedding"])
    keep = np.zeros(len(table), bool)
    keep[np.unique(tokens)] = True
    params["txt"]["Embed_0"]["embedding"] = np.where(keep[:, None], table, 0).astype(np.float32)
    return params


def preprocess(images: np.ndarray, codebase: str) -> np.ndarray:
    x = images.astype(np.float32)
    if codebase == "big_vision":
        return -1 + x / 255 * 2
    mean = np.float32(255) * np.asarray((0.485, 0.456, 0.406), np.float32)
    std = np.float32(255) * np.asarray((0.229, 0.224, 0.225), np.float32)
    return (x - mean) / std


def build_and_run(case: tuple, tokenizers: dict[str, Path], images: np.ndarray, out: Path, seed: int) -> dict:
    import flax
    import jax

    name, codebase, image_pool, posemb, text_pool, tok_kind, extra = case
    tokens = tokenize(tok_kind, TEXTS, tokenizers)
    if tok_kind == "clip-bpe":
        vocab_size = 49408
    elif tok_kind == "sentencepiece":
        import sentencepiece as spm

        vocab_size = spm.SentencePieceProcessor(model_file=str(tokenizers["sentencepiece"])).vocab_size()
    else:  # CLIPA's embedding table is larger than its vocab.txt (32000 rows for bert-base's 30522 entries)
        vocab_size = len(tokenizers["bert"].read_text().split()) + 7
    config = model_config(case, vocab_size)
    if codebase == "big_vision":
        from big_vision.models.proj.image_text import two_towers as upstream
    else:
        from models import two_towers as upstream  # clipa_jax/models
    model = upstream.Model(**config)
    dummy_image = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    variables = model.init(jax.random.PRNGKey(seed), dummy_image, np.zeros((1, MAX_LEN), np.int32))
    params = perturb(flax.core.unfreeze(variables["params"]), seed)
    if tok_kind == "clip-bpe":
        params = zero_unused_rows(params, tokens)

    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    npz = folder / "model.npz"
    if codebase == "big_vision":
        import big_vision.utils as bv_utils

        names_and_values, _ = bv_utils.tree_flatten_with_names(params)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in names_and_values})
        npz.write_bytes(buffer.getvalue())
        restored = bv_utils.load_params(str(npz))
    else:
        import helpers.utils as clipa_utils

        checkpoint = {"params": params,
                      "chrono": {"accum_examples_seen": np.float32(0), "accum_train_time": np.float32(0)}}
        if extra.get("opt"):  # as main.py: the optimizer state beside the params (optax_name = scale_by_adam)
            import optax

            checkpoint["opt"] = jax.tree_util.tree_map(np.asarray, optax.scale_by_adam().init(params))
        clipa_utils.save_checkpoint(checkpoint, str(npz), compressed=True)
        restored = clipa_utils.load_params(None, str(npz))  # its "params" subtree

    pixels = preprocess(images, codebase)
    zimg, ztxt, outs = model.apply({"params": restored}, pixels, tokens)
    raw_img, raw_txt = np.asarray(outs["img/logits"]), np.asarray(outs["txt/logits"])
    np.testing.assert_allclose(raw_img / (np.linalg.norm(raw_img, axis=1, keepdims=True) + 1e-8), zimg, atol=1e-6)
    np.save(folder / "images.npy", images)
    np.save(folder / "tokens.npy", tokens)
    np.save(folder / "image_embeddings.npy", np.asarray(zimg, np.float32))
    np.save(folder / "text_embeddings.npy", np.asarray(ztxt, np.float32))
    np.save(folder / "image_features.npy", raw_img.astype(np.float32))
    np.save(folder / "text_features.npy", raw_txt.astype(np.float32))
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer = {"kind": tok_kind, "max_len": MAX_LEN}
    if tok_kind != "clip-bpe":
        tokenizer["file"] = f"../tokenizers/{tokenizers[tok_kind].name}"
    if tok_kind == "sentencepiece":
        tokenizer.update(op='tokenize(max_len=16, eos="sticky", pad_value=1)', lower=True)
    if tok_kind == "bert":
        tokenizer.update(op="bert_tokenize(max_len=16, vocab_path=...)", lower=True)
    case_info = {
        "name": name, "codebase": codebase, "image_pool": image_pool, "posemb": posemb, "text_pool": text_pool,
        "tokenizer": tokenizer, "texts": TEXTS, "image_size": IMAGE_SIZE,
        "preprocess": BV_PREPROCESS if codebase == "big_vision" else CLIPA_PREPROCESS,
        "temperature": float(np.asarray(outs["t"])[0]),
        "bias": float(np.asarray(restored["b"])[0]) if "b" in restored else None,
        "npz_sha256": hashlib.sha256(npz.read_bytes()).hexdigest(),
    }
    (folder / "case.json").write_text(json.dumps(case_info, indent=2) + "\n")
    return case_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--big-vision", type=Path, required=True, help="export of big_vision (holds big_vision/)")
    parser.add_argument("--clipa", type=Path, required=True, help="export of CLIPA's clipa_jax/ folder")
    parser.add_argument("--deps", type=Path, required=True, help="folder with einops and ml_collections")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    install_shims(args.big_vision.resolve(), args.clipa.resolve(), args.deps.resolve())
    import flax
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    out = args.out
    (out / "tokenizers").mkdir(parents=True, exist_ok=True)
    tokenizers = {"sentencepiece": train_sentencepiece(out / "tokenizers"),
                  "bert": write_vocab_txt(out / "tokenizers")}
    images = np.random.default_rng(1).integers(0, 256, (N_IMAGES, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    cases = [build_and_run(case, tokenizers, images, out, seed) for seed, case in enumerate(CASES)]
    import sentencepiece
    import tokenizers as hf_tokenizers

    manifest = {
        "issue": "#34 item 4",
        "command": "python scripts/make_big_vision_golden.py --big-vision /tmp/bvg/bv --clipa "
                   "/tmp/bvg/clipa/clipa_jax --deps /tmp/bvg/deps --out tests/fixtures/big_vision_golden",
        "upstream": {"google-research/big_vision": BIG_VISION_COMMIT, "UCSC-VLAA/CLIPA": CLIPA_COMMIT},
        "versions": {"jax": jax.__version__, "flax": flax.__version__, "numpy": np.__version__,
                     "sentencepiece": sentencepiece.__version__, "tokenizers": hf_tokenizers.__version__},
        "cases": [{k: c[k] for k in ("name", "codebase", "image_pool", "posemb", "text_pool")}
                  | {"tokenizer": c["tokenizer"]["kind"]} for c in cases],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
