"""Every model folder or file is checked before a model is built or data touched ("Reliability, third round"): one
row per class of bad input the issue measured (each evaluated, accepted or crashed on the code before the fix), all
through the CLI, each answered with exit 2 and one line naming the file and the tensor or key; a property-based fuzz
of the big_vision reader through the same path; and the flax shapes the importer checks against, pinned to the flax
module's own."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from reclip_eval.checkpoint import CONFIG_NAME, save_checkpoint
from reclip_eval.cli.main import main
from reclip_eval.flax_models.big_vision_npz import read_npz
from reclip_eval.models import CLIP, build_config

from . import test_peers_adapters
from .conftest import REPO
from .test_big_vision_import import BIG_VISION, CLIPA, CLIPA_SINCOS, _random_params, _scanned

# The transformers CLIPModel folder fixture of tests/test_peers_adapters.py (model, folder), under this name here.
tiny_hf = test_peers_adapters.tiny_hf_clip

QUERY_1 = "img/Transformer/encoderblock_1/MultiHeadDotProductAttention_0/query/kernel"
LN_SCALE_1 = "img/Transformer/encoderblock_1/LayerNorm_0/scale"


def _cli(capsys, model: str, tmp_path: Path, *extra: str) -> tuple[int, list[str]]:
    """Evaluate `model` through the CLI on a task whose data is absent: a model that loads reaches the data check
    (and says the data is missing); a refused one never gets there. Returns the exit code and the error lines."""
    capsys.readouterr()
    code = main(["--model", model, "--task", "imagenet", "--data-dir", str(tmp_path / "no-data"), "--output",
                 str(tmp_path / "results"), "--workers", "0", "--device", "cpu", *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert not (tmp_path / "results").exists()
    return code, [line for line in err.splitlines() if not line.startswith(("INFO ", "WARNING "))]


# --- the files the rows break ------------------------------------------------------------------------------------


def _npz(tmp_path: Path, name: str, edit: Callable[[dict[str, np.ndarray]], None]) -> Path:
    flat = _random_params(BIG_VISION)
    edit(flat)
    np.savez(tmp_path / name, **flat)
    return tmp_path / name


def _set(key: str, value: np.ndarray) -> Callable[[dict[str, np.ndarray]], None]:
    return lambda flat: flat.__setitem__(key, value)


def _hf_folder(tiny_hf: Path, tmp_path: Path, edit: Callable[[Path], None]) -> Path:
    folder = Path(shutil.copytree(tiny_hf, tmp_path / "hf"))
    edit(folder)
    return folder


def _drop(*names: str) -> Callable[[Path], None]:
    return lambda folder: [p.unlink() for p in folder.iterdir() if p.name in names or
                           any(n.endswith("*") and p.name.startswith(n[:-1]) for n in names)]


def _small_vocabulary(folder: Path) -> None:
    """A slow CLIP tokenizer of a handful of tokens: complete files, but not the text tower's vocabulary."""
    _drop("tokenizer*")(folder)
    (folder / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2}))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def _edit_json(name: str, **changes) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        for dotted, value in changes.items():
            *parents, leaf = dotted.split("__")
            node = data
            for key in parents:
                node = node[key]
            node[leaf] = value
        (folder / name).write_text(json.dumps(data))
    return edit


def _shrunk_text_projection(folder: Path) -> None:
    state = load_file(str(folder / "model.safetensors"))
    state["text.proj.weight"] = state["text.proj.weight"][:-1].contiguous()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _scanned_with_0d_leaf(flat: dict[str, np.ndarray]) -> None:
    scanned = _scanned(flat)
    scanned["img/Transformer/encoderblock/LayerNorm_0/scale"] = np.float32(1.0)
    flat.clear()
    flat.update(scanned)


def _zip_member_not_npy(path: Path) -> None:
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes.txt", "not an array")


def _npy_header_unclosed(path: Path) -> None:
    """A member whose .npy header dict is never closed: numpy's fallback parser (tokenize) raises its own error."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.zeros(3, np.float32))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("extra.npy", buffer.getvalue().replace(b"}", b" ", 1))


# (class, id, what to load, the --backend, the line's expected text). "npz" rows edit the valid big_vision tree.
ROWS = [
    ("silently wrong numbers", "hf folder without tokenizer files", ("hf", _drop("vocab.json", "merges.txt",
                                                                             "tokenizer*")),
     "torch", r"hf: no tokenizer vocabulary: tokenizer\.json, or vocab\.json \+ merges\.txt"),
    ("silently wrong numbers", "hf folder without merges.txt", ("hf", _drop("merges.txt", "tokenizer.json")),
     "torch", r"hf: no tokenizer vocabulary.*\(merges\.txt missing\)"),
    ("silently wrong numbers", "hf tokenizer of another vocabulary", ("hf", _small_vocabulary),
     "torch", r"hf: the tokenizer has 3 tokens, the text tower's embedding 49408"),
    ("non-finite weights", "inf LayerNorm scale, torch", ("npz", _set(LN_SCALE_1, np.full(32, np.inf, np.float32))),
     "torch", rf"m\.npz: {LN_SCALE_1}: holds NaN or inf values"),
    ("non-finite weights", "inf LayerNorm scale, jax", ("npz", _set(LN_SCALE_1, np.full(32, np.inf, np.float32))),
     "jax", rf"m\.npz: {LN_SCALE_1}: holds NaN or inf values"),
    ("non-finite weights", "NaN temperature, jax", ("npz", _set("t", np.array([np.nan], np.float32))),
     "jax", r"m\.npz: t: holds NaN or inf values"),
    ("non-finite weights", "float64 beyond float32", ("npz", _set("img/head/bias", np.full(24, 1e300))),
     "torch", r"m\.npz: img/head/bias: holds float64 values beyond float32's range"),
    ("inconsistent tree", "query kernel of another head count, torch",
     ("npz", lambda flat: flat.__setitem__(QUERY_1, flat[QUERY_1].reshape(32, 4, 8))),
     "torch", rf"m\.npz: {QUERY_1} has shape \(32, 4, 8\), expected \(32, 2, 16\)"),
    ("inconsistent tree", "query kernel of another head count, jax",
     ("npz", lambda flat: flat.__setitem__(QUERY_1, flat[QUERY_1].reshape(32, 4, 8))),
     "jax", rf"m\.npz: {QUERY_1} has shape \(32, 4, 8\), expected \(32, 2, 16\)"),
    ("inconsistent tree", "MLP of another width in one layer",
     ("npz", _set("txt/Encoder_0/encoderblock_1/MlpBlock_0/Dense_1/bias", np.zeros(40, np.float32))),
     "torch", r"m\.npz: txt/Encoder_0/encoderblock_1/MlpBlock_0/Dense_1/bias has shape \(40,\), expected \(32,\)"),
    ("traceback", "temperature overflowing exp", ("npz", _set("t", np.array([1000.0], np.float32))),
     "torch", r"m\.npz: t \(the log temperature\) is 1000: exp\(t\).* overflows float32"),
    ("traceback", "empty temperature", ("npz", _set("t", np.zeros(0, np.float32))),
     "torch", r"m\.npz: t: empty \(shape \(0,\)\)"),
    ("traceback", "kernel of the wrong rank",
     ("npz", lambda flat: flat.__setitem__("img/head/kernel", flat["img/head/kernel"].reshape(-1))),
     "torch", r"m\.npz: img/head/kernel has shape \(768,\); expected 2 axes"),
    ("traceback", "patch kernel of the wrong rank",
     ("npz", lambda flat: flat.__setitem__("img/embedding/kernel", flat["img/embedding/kernel"][0])),
     "torch", r"m\.npz: img/embedding/kernel has shape \(8, 3, 32\); expected 4 axes"),
    ("traceback", "zip member that is not .npy", ("npz-file", _zip_member_not_npy),
     "torch", r"m\.npz: member notes\.txt is not a \.npy array"),
    ("traceback", ".npy header numpy cannot parse", ("npz-file", _npy_header_unclosed),
     "torch", r"m\.npz: not a readable \.npz of plain arrays \(extra\.npy: TokenError"),
    ("traceback", "not a zip", ("npz-file", lambda path: path.write_bytes(b"hello, not a zip archive")),
     "torch", r"m\.npz: not a \.npz archive \(a zip of \.npy arrays\)"),
    ("traceback", "0-d scanned leaf", ("npz", _scanned_with_0d_leaf),
     "torch", r"m\.npz: img/Transformer/encoderblock/LayerNorm_0/scale is a scanned block's leaf"),
    ("traceback", "hf-hub id of three parts", ("spec", "hf-hub:a/b/c"),
     "torch", r"hf-hub:a/b/c: expected a Hub model repo id of the form 'org/name'"),
    ("traceback", "hf-hub id with spaces", ("spec", "hf-hub:org/bad name!"),
     "torch", r"hf-hub:org/bad name!: not a valid Hub repo id"),
    ("traceback", "hf config not matching its weights (projection)", ("hf", _edit_json(CONFIG_NAME, projection_dim=24)),
     "torch", r"hf/model\.safetensors: tensor (text|visual)_projection\.weight has shape \(16, 32\); the CLIPModel "
              r"of config\.json gives it shape \(24, 32\) \(and 1 more\)"),
    ("traceback", "hf config not matching its weights (layers)",
     ("hf", _edit_json(CONFIG_NAME, text_config__num_hidden_layers=3)),
     "torch", r"hf/model\.safetensors: tensor text_model\.encoder\.layers\.2\.\S+ is missing"),
    ("multi-line error", "our config not matching its weights", ("ours", _edit_json(CONFIG_NAME, embed_dim=48)),
     "jax", r"ours/model\.safetensors: tensor \S+proj\.weight has shape \(\d+, \d+\); the model of config\.json "
            r"gives it shape"),
    ("traceback", "config.json that is a JSON list", ("config.json", b"[1, 2]"),
     "torch", r"m/config\.json: expected a JSON object \(the model's configuration\), found list"),
    ("traceback", "config.json that is not UTF-8", ("config.json", b'\xff\xfe{"model_type": "clip"}'),
     "torch", r"m/config\.json: not valid JSON \('utf-8' codec can't decode"),
    ("multi-line error", "a named model's checkpoint not matching its config", ("named", _shrunk_text_projection),
     "torch", r"demo/model\.safetensors: tensor text\.proj\.weight has shape \(\d+, \d+\); the model of config\.json "
              r"gives it shape"),
    ("traceback", "open_clip config that is not an object", ("open_clip", None),
     "torch", r"oc/open_clip_config\.json: expected a JSON object with a 'model_cfg' object"),
]


@pytest.mark.parametrize(("kind", "case", "spec", "backend", "expected"), ROWS,
                         ids=[f"{row[0]}: {row[1]}" for row in ROWS])
def test_each_bad_model_is_one_line_naming_the_file_before_data(kind, case, spec, backend, expected, tiny_hf,
                                                               tmp_path, capsys):
    form, edit = spec
    extra = ["--backend", backend]
    if form == "npz":
        model = f"big_vision:{_npz(tmp_path, 'm.npz', edit)}"
    elif form == "npz-file":
        path = _npz(tmp_path, "m.npz", lambda flat: None)
        edit(path)
        model = f"big_vision:{path}"
    elif form == "hf":
        model = f"hf:{_hf_folder(tiny_hf[1], tmp_path, edit)}"
    elif form == "ours":
        folder = save_checkpoint(CLIP(build_config("tiny")), tmp_path / "ours")
        edit(folder)
        model = str(folder)
    elif form == "config.json":
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / CONFIG_NAME).write_bytes(edit)
        model = str(tmp_path / "m")
    elif form == "named":  # the bundled demo's files, edited, as the --checkpoint of the named model
        folder = Path(shutil.copytree(REPO / "zoo" / "reclip-demo", tmp_path / "demo"))
        edit(folder)
        model = "reclip-demo"
        extra += ["--checkpoint", str(folder)]
    elif form == "open_clip":
        (tmp_path / "oc").mkdir()
        (tmp_path / "oc" / "open_clip_config.json").write_text("[]")
        model = str(tmp_path / "oc")
    else:
        model = edit
    code, lines = _cli(capsys, model, tmp_path, *extra)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert __import__("re").search(expected, lines[0]), lines[0]


def test_a_complete_hf_folder_and_a_valid_tree_still_load(tiny_hf, tmp_path, capsys):
    """The checks refuse only what is broken: the rows' unedited files get as far as the (absent) data."""
    stated = tmp_path / "model_config.json"  # what the tree's weights cannot tell (issue 34: never guessed)
    stated.write_text('{"image": {"pool_type": "tok"}, "text": {"pool_type": "last"}}')
    for model, extra in ((f"hf:{tiny_hf[1]}", ()),
                         (f"big_vision:{_npz(tmp_path, 'm.npz', lambda flat: None)}", ("--model-config", str(stated)))):
        code, lines = _cli(capsys, model, tmp_path, *extra)
        [error] = [line for line in lines if line.startswith("error: ")]
        assert code == 2 and "imagenet" in error and "m.npz" not in error, lines


def test_hf_weights_are_checked_finite_before_the_model_is_built(tiny_hf, tmp_path, monkeypatch):
    import transformers

    from reclip_eval.errors import CheckpointError
    from reclip_eval.zoo.resolve import load_adapter

    def poisoned(folder: Path) -> None:
        state = load_file(str(folder / "model.safetensors"))
        state["text_model.final_layer_norm.weight"][3] = float("inf")
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})

    folder = _hf_folder(tiny_hf[1], tmp_path, poisoned)
    monkeypatch.setattr(transformers.CLIPModel, "from_pretrained", None)  # building it would be a TypeError
    with pytest.raises(CheckpointError, match=r"model\.safetensors: 1 tensor holds NaN or inf values "
                                              r"\(text_model\.final_layer_norm\.weight\)"):
        load_adapter(f"hf:{folder}")


@pytest.mark.parametrize("config", [BIG_VISION, CLIPA, CLIPA_SINCOS,
                                    dataclasses.replace(build_config("tiny"), embed_dim=40)],
                         ids=["big_vision", "clipa", "clipa sincos", "ours"])
def test_the_flax_shapes_checked_are_the_flax_modules_own(config):
    """The importer's shape check (convert.expected_flax_shapes, from the conversion pieces, without jax) equals the
    flax module's abstract init, so a tree that passes it is one the flax model takes."""
    import jax

    from reclip_eval.flax_models.clip import init_params
    from reclip_eval.flax_models.convert import expected_flax_shapes, flatten

    abstract = jax.eval_shape(lambda: init_params(config))
    assert expected_flax_shapes(config) == {path: tuple(leaf.shape) for path, leaf in flatten(abstract)}


# --- fuzz: the big_vision reader through the CLI -----------------------------------------------------------------


def _valid_tree() -> dict[str, np.ndarray]:
    return {key: np.ascontiguousarray(value) for key, value in _random_params(BIG_VISION, seed=5).items()}


VALID = _valid_tree()
KEYS = sorted(VALID)
BROKEN_DTYPES = [np.bool_, np.complex64, np.dtype("U4"), np.dtype("M8[s]"), np.dtype([("a", "f4")])]


def _savez(flat: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **flat)
    return buffer.getvalue()


VALID_BYTES = _savez(VALID)


@st.composite
def broken_files(draw) -> tuple[str, bytes, bool]:
    """(what was done, the file's bytes, whether the tree is certainly broken). Byte corruption may hit a field no
    reader uses (a timestamp), so it is the one mutation that may leave a valid tree."""
    mutation = draw(st.sampled_from(["truncate", "corrupt", "random", "dtype", "shape", "nonfinite", "empty",
                                     "bfloat16 of another shape"]))
    if mutation == "truncate":
        cut = draw(st.integers(0, len(VALID_BYTES) - 1))
        return f"truncated at {cut}", VALID_BYTES[:cut], True
    if mutation == "corrupt":
        data = bytearray(VALID_BYTES)
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[position] ^= draw(st.integers(1, 255))
        return "corrupted bytes", bytes(data), False
    if mutation == "random":
        return "random bytes", draw(st.binary(min_size=0, max_size=512)), True
    key = draw(st.sampled_from(KEYS))
    flat = dict(VALID)
    array = flat[key]
    if mutation == "dtype":
        dtype = draw(st.sampled_from(BROKEN_DTYPES))
        flat[key] = np.zeros(array.shape, dtype)
    elif mutation == "shape":
        reversed_shape = array.shape[::-1]
        flat[key] = array.reshape(reversed_shape if reversed_shape != array.shape else (1, *array.shape))
    elif mutation == "nonfinite":
        index = draw(st.integers(0, array.size - 1))
        value = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        flat[key] = array.copy()
        flat[key].reshape(-1)[index] = value
    elif mutation == "empty":
        flat[key] = np.zeros((0, *array.shape[1:]), array.dtype)
    else:
        flat[key] = array.reshape(-1).astype(ml_dtypes.bfloat16).view("V2")[:-1]
    return f"{mutation} of {key}", _savez(flat), True


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(case=broken_files())
def test_fuzzed_big_vision_files_are_refused_in_one_line_or_load_unchanged(case, tmp_path, capsys):
    what, data, broken = case
    path = tmp_path / "fuzzed.npz"
    path.write_bytes(data)
    shutil.rmtree(tmp_path / "results", ignore_errors=True)
    code, lines = _cli(capsys, f"big_vision:{path}", tmp_path)
    assert code == 2, what  # never 0: a loaded model still finds no data
    refused = lines[0].startswith(f"error: {path}")
    if refused:
        assert len(lines) == 1, (what, lines)
        return
    # The reader took it: then it must be the valid tree itself, byte damage in a field no reader needs.
    assert not broken, (what, lines)
    loaded = read_npz(path)
    assert set(loaded) == set(VALID) and all(np.array_equal(loaded[k], VALID[k]) for k in VALID), what
