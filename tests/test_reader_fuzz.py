"""Property-based fuzzing of every label-file reader through the command line (`main(argv)` in this process).

Each test starts from a small valid file in the real layout, breaks it the ways files break (truncated, bytes
overwritten, a value of another type, a key dropped, an entry repeated) and runs the command that reads it. The
only outcomes accepted: exit 2 with an `error:` line naming the file (never a traceback: main() lets anything but
a ReclipError through), or a run that completes (exit 0), e.g. with a corrupt or missing image counted in the
results. The readers run before the classifier is built, so most examples never reach a model forward; the valid
ones evaluate a three-class task with one prompt on the tiny checkpoint.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reclip_eval.cli.main import main
from reclip_eval.paths import data_folder
from tests.layout_files import DEVKIT_IDS, devkit, flat_imagenet, hf_folder, loc_csv_text, synsets
from tests.test_real_layouts import _retrieval_fixture

# Examples per reader: 25 where an example costs milliseconds, 15 where a valid one runs an evaluation (about
# 0.5 s), so that the file stays near a minute on one core. RECLIP_FUZZ_EXAMPLES=300 searches deeper, by hand.
_DEEPER = os.environ.get("RECLIP_FUZZ_EXAMPLES")
_COMMON = dict(deadline=None, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FUZZ = settings(max_examples=int(_DEEPER or 25), **_COMMON)
EVAL_FUZZ = settings(max_examples=int(_DEEPER or 15), **_COMMON)
# Values of every JSON/YAML type, put where another type belongs.
SWAPS = [None, 0, -1, 7, 1.5, math.inf, True, "", "x", "n01443537", [], [1, "a"], {}, {"id": 1}]


# --- mutations: from the bytes (or the parsed tree) of a valid file to a broken one ---

@st.composite
def broken_bytes(draw, valid: bytes) -> bytes:
    """`valid` truncated, with a stretch overwritten by random bytes, or with random bytes inserted."""
    at = draw(st.integers(0, max(0, len(valid) - 1)))
    noise = draw(st.binary(min_size=1, max_size=12))
    how = draw(st.sampled_from(["truncate", "overwrite", "insert"]))
    if how == "truncate":
        return valid[:at]
    if how == "overwrite":
        return valid[:at] + noise + valid[at + len(noise):]
    return valid[:at] + noise + valid[at:]


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and list indexes) to a value inside `tree`, the root excluded."""
    children = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    found = []
    for key, value in children:
        found.append((*prefix, key))
        found += _paths(value, (*prefix, key))
    return found


@dataclass(frozen=True)
class Broken:
    data: bytes
    repeats_entry: bool = False  # an object of a list written twice: the file lists an id (or a name) again


# Keys that identify or label an entry: half the tree mutations hit one of them (ids of another type, a repeat).
LABEL_KEYS = {"id", "image_id", "category_id", "filename", "filepath", "file_name", "split", "name", "raw",
              "caption", "frequency"}
# What makes two entries the same one (Karpathy's filename, filepath and split; every other file's id; a stage's name).
IDENTITY_KEYS = {"id", "filename", "filepath", "split", "name"}


@st.composite
def broken_tree(draw, valid: Any, dump: Callable[[Any], str]) -> Broken:
    """A copy of the parsed file `valid` with one value swapped for another type, one key or item dropped, or one
    list item repeated (as is, or with one of its values changed: the same id with another label)."""
    tree = json.loads(json.dumps(valid))
    paths = _paths(tree)
    labels = [path for path in paths if path[-1] in LABEL_KEYS]
    path = draw(st.sampled_from(labels if labels and draw(st.booleans()) else paths))
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    how = draw(st.sampled_from(["swap", "drop", "repeat"] if isinstance(parent, list) else ["swap", "drop"]))
    copy, changed = None, None
    if how == "swap":
        parent[key] = draw(st.sampled_from(SWAPS))
    elif how == "drop":
        del parent[key]
    else:
        copy = json.loads(json.dumps(parent[key]))
        if isinstance(copy, dict) and copy:
            changed = draw(st.sampled_from(sorted(copy)))
            copy[changed] = draw(st.sampled_from([copy[changed], *SWAPS]))
        parent.insert(draw(st.integers(0, len(parent))), copy)
    # An entry of a top-level list (images, annotations, categories, stages) written again, its identity unchanged.
    entry = how == "repeat" and len(path) == 2 and isinstance(copy, dict) and changed not in IDENTITY_KEYS
    return Broken(dump(tree).encode(), repeats_entry=entry)


@st.composite
def broken_lines(draw, valid: str, header: bool) -> Broken:
    """`valid` (a line-based file, its first line a header if `header`) with one line dropped, a data line repeated
    elsewhere (as is, or cut and relabelled), or one line cut short."""
    lines = valid.splitlines()
    first = 1 if header else 0
    index = draw(st.integers(first, len(lines) - 1))
    how = draw(st.sampled_from(["drop", "repeat", "relabel", "cut"]))
    line = lines[index]
    if how == "drop":
        del lines[index]
    elif how in ("repeat", "relabel"):
        if how == "relabel":
            line = line[:draw(st.integers(0, len(line)))] + draw(st.sampled_from(["n01443537", "7", "x", ","]))
        lines.insert(draw(st.integers(first, len(lines))), line)
    else:
        lines[index] = line[:draw(st.integers(0, max(0, len(line) - 1)))]
    return Broken(("\n".join(lines) + "\n").encode(), repeats_entry=how == "repeat")


def text_file(valid: str, header: bool = True):
    """A broken version of a text file: bytes or lines."""
    return st.one_of(broken_bytes(valid.encode()).map(Broken), broken_lines(valid, header))


def json_file(valid: Any):
    return st.one_of(broken_bytes(json.dumps(valid).encode()).map(Broken), broken_tree(valid, json.dumps))


def yaml_file(valid: Any):
    return st.one_of(broken_bytes(yaml.safe_dump(valid).encode()).map(Broken), broken_tree(valid, yaml.safe_dump))


# --- running the command line ---

def run(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def assert_clean(argv: list[str], capsys, names: tuple[str, ...], must_refuse: bool = False) -> int:
    """Run `argv`: exit 0 (unless `must_refuse`), or exit 2 with one `error:` line naming one of `names` (the
    broken file's path or name); anything but a ReclipError propagates out of main() and fails the test with its
    traceback."""
    code, err = run(argv, capsys)
    assert "Traceback" not in err
    if code == 0:
        assert not must_refuse, f"accepted: {' '.join(argv)}"
        return code
    errors = [line for line in err.splitlines() if line.startswith("error: ") or ": error: " in line]  # argparse's
    assert code == 2 and len(errors) == 1, f"exit {code}, stderr:\n{err}"
    assert any(name in errors[0] for name in names), f"{names} not in: {errors[0]}"
    return code


class Runs:
    """Fresh output folders, one per example: a valid example writes a results file, and the next one, on other
    data, would otherwise be refused as another measurement."""

    def __init__(self, root: Path):
        self.root, self.count = root, itertools.count()

    def eval_argv(self, checkpoint: Path, task: str | Path, data: Path) -> list[str]:
        return ["--model", str(checkpoint), "--task", str(task), "--data-dir", str(data), "--workers", "0",
                "--batch-size", "8", "--output", str(self.root / f"results-{next(self.count)}")]


@pytest.fixture()
def runs(tmp_path) -> Runs:
    return Runs(tmp_path)


@pytest.fixture()
def small_imagenet(tmp_path) -> Path:
    """A task YAML like tasks/imagenet.yaml (the flat and `datasets` layouts) over the three classes of the
    fixtures, with one prompt: a valid example evaluates in a fraction of a second."""
    folder = tmp_path / "task"
    folder.mkdir()
    classes = data_folder("tasks") / "imagenet" / "classes.tsv"
    names = dict(line.split("\t") for line in classes.read_text().splitlines() if "\t" in line)
    (folder / "classes.tsv").write_text("".join(f"{w}\t{names[w]}\n" for w in DEVKIT_IDS))
    (folder / "templates.txt").write_text("a photo of a {}.\n")
    task = folder / "small-imagenet.yaml"
    task.write_text(yaml.safe_dump({
        "name": "small-imagenet", "kind": "zeroshot_classification", "description": "fuzz", "get_data": "tests",
        "classes": "classes.tsv", "templates": "templates.txt",
        "data": {"folder": "imagenet", "layouts": [
            {"kind": "flat_loc_csv", "split": "val", "labels": "LOC_val_solution.csv"},
            {"kind": "flat_devkit", "split": "val", "devkit": "ILSVRC2012_devkit_t12"},
            {"kind": "hf_dataset", "dataset": "hf", "split": "validation"}]}}))
    return task


# --- ImageNet: LOC_val_solution.csv, the devkit, a `datasets` folder ---

def test_loc_csv(tiny_checkpoint, small_imagenet, runs, tmp_path, capsys):
    folder = tmp_path / "data" / "imagenet"
    valid = loc_csv_text(flat_imagenet(folder))

    @EVAL_FUZZ
    @given(text_file(valid))
    def check(broken: Broken):
        (folder / "LOC_val_solution.csv").write_bytes(broken.data)
        assert_clean(runs.eval_argv(tiny_checkpoint, small_imagenet, folder.parent), capsys,
                     ("LOC_val_solution.csv",), must_refuse=broken.repeats_entry)

    check()


@st.composite
def broken_synsets(draw) -> np.ndarray:
    """The devkit's synsets table with one cell of another type or one row repeated with another value."""
    rows = [[i, w, 0] for w, i in DEVKIT_IDS.items()] + [[1001, "n00001740", 5]]
    row, column = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, 2))
    value = draw(st.sampled_from([-1, 3, 7, 2.5, "7", "n01443537", "", np.zeros(2), np.array([])]))  # savemat: no None
    if draw(st.booleans()):
        rows[row][column] = value
    else:
        rows.append([*rows[row][:column], value, *rows[row][column + 1:]])
    return synsets([tuple(r) for r in rows])


def test_devkit(tiny_checkpoint, small_imagenet, runs, tmp_path, capsys):
    folder = tmp_path / "data" / "imagenet"
    rows = flat_imagenet(folder)
    labels = devkit(folder, rows)
    meta, truth = labels / "data" / "meta.mat", labels / "data" / "ILSVRC2012_validation_ground_truth.txt"
    valid_meta, valid_truth = meta.read_bytes(), truth.read_text()

    @EVAL_FUZZ
    @given(st.one_of(broken_bytes(valid_meta).map(lambda b: ("meta", Broken(b))),
                     broken_synsets().map(lambda t: ("table", t)),
                     text_file(valid_truth, header=False).map(lambda b: ("truth", b))))
    def check(broken):
        which, what = broken
        devkit(folder, rows, what if which == "table" else None)
        if which != "table":
            (meta if which == "meta" else truth).write_bytes(what.data)
        # One id repeated in the ground truth is one label too many for the images.
        assert_clean(runs.eval_argv(tiny_checkpoint, small_imagenet, folder.parent), capsys,
                     ("ILSVRC2012_devkit_t12",), must_refuse=which == "truth" and what.repeats_entry)

    check()


def test_datasets_folder(tiny_checkpoint, small_imagenet, runs, tmp_path, capsys):
    folder = tmp_path / "data" / "imagenet"
    valid = tmp_path / "valid-hf"
    hf_folder(valid, [0, 1, 2])
    files = sorted(p.relative_to(valid / "hf") for p in (valid / "hf").rglob("*") if p.is_file())

    @EVAL_FUZZ
    @given(st.sampled_from(files).flatmap(
        lambda name: (json_file(json.loads((valid / "hf" / name).read_text())) if name.suffix == ".json"
                      else broken_bytes((valid / "hf" / name).read_bytes()).map(Broken)).map(lambda b: (name, b))))
    def check(broken):
        name, what = broken
        shutil.rmtree(folder / "hf", ignore_errors=True)
        shutil.copytree(valid / "hf", folder / "hf")
        (folder / "hf" / name).write_bytes(what.data)
        # A data file listed twice in state.json lists every image again.
        assert_clean(runs.eval_argv(tiny_checkpoint, small_imagenet, folder.parent), capsys, ("imagenet/hf",),
                     must_refuse=what.repeats_entry and name.name == "state.json")

    check()


# --- retrieval: Karpathy JSON, COCO-captions JSON, CLIP_benchmark's Flickr txt ---

def _retrieval_check(task: str, annotations: str, make: Callable[[Any], Any], refuse_repeats: bool = True):
    """A fuzz test of one retrieval annotation file of tests/test_real_layouts.py's four-image set (`make`: the
    strategy for its broken bytes, given the valid file's text); the task's other annotation files removed."""

    def test(tiny_checkpoint, runs, tmp_path, capsys):
        flickr, coco = _retrieval_fixture(tmp_path / "data")
        folder = flickr if task == "flickr30k" else coco
        for other in ("dataset_flickr30k.json", "flickr30k_test_karpathy.txt", "dataset_coco.json",
                      "coco_test_karpathy.json"):
            if other != annotations and (folder / other).exists():
                (folder / other).unlink()
        path = folder / annotations

        @EVAL_FUZZ
        @given(make(path.read_text()))
        def check(broken: Broken):
            path.write_bytes(broken.data)
            assert_clean(runs.eval_argv(tiny_checkpoint, task, folder.parent), capsys, (annotations,),
                         must_refuse=refuse_repeats and broken.repeats_entry)

        check()

    return test


test_karpathy_json = _retrieval_check("flickr30k", "dataset_flickr30k.json", lambda text: json_file(json.loads(text)))
test_coco_captions_json = _retrieval_check("mscoco", "coco_test_karpathy.json",
                                           lambda text: json_file(json.loads(text)))
# A caption line repeated next to its image's other lines is one more (identical) caption, which real files may hold.
test_flickr_txt = _retrieval_check("flickr30k", "flickr30k_test_karpathy.txt", text_file, refuse_repeats=False)


# --- recipes, key=value overrides, zoo entries ---

def test_recipe_yaml(tmp_path, capsys):
    valid = yaml.safe_load((data_folder("training") / "tiny-shapes.yaml").read_text())
    path = tmp_path / "recipe.yaml"

    @FUZZ
    @given(yaml_file(valid))
    def check(broken: Broken):
        path.write_bytes(broken.data)
        assert_clean(["config", "show", str(path)], capsys, (str(path),), must_refuse=broken.repeats_entry)

    check()


def test_recipe_overrides(capsys):
    recipe = yaml.safe_load((data_folder("training") / "tiny-shapes.yaml").read_text())
    keys = [".".join(str(k) for k in path) for path in _paths(recipe)]
    junk = ["-1", "9", "x", "", " ", "-0"]  # no key and no index of this recipe

    @st.composite
    def override(draw) -> tuple[str, bool]:
        """`key=value` with a key of the recipe, or with one of its parts replaced by junk (then it must be
        refused: a junk index is no stage, a junk key no field)."""
        parts = draw(st.sampled_from(keys)).split(".")
        broken = draw(st.booleans())
        if broken:
            parts[draw(st.integers(0, len(parts) - 1))] = draw(st.sampled_from(junk))
        value = draw(st.sampled_from(["0", "-3", "1e9", "null", "[]", "{}", "x", "true", "[1, 2]", "{lr: -1}", "'"]))
        return f"{'.'.join(parts)}={value}", broken

    @FUZZ
    @given(st.lists(override(), min_size=1, max_size=3))
    def check(overrides: list[tuple[str, bool]]):
        items = [o for o, _ in overrides]
        assert_clean(["config", "show", "tiny-shapes", *items], capsys, ("tiny-shapes", *items),
                     must_refuse=any(broken for _, broken in overrides))

    check()


def test_zoo_entry(tmp_path, capsys):
    path = tmp_path / "fuzz-entry.yaml"
    with_recipe = {"name": "fuzz-entry", "description": "a model", "recipe": "tiny-shapes", "checkpoint": None,
                   "license": "apache-2.0", "training_data": "x", "intended_use": "x", "limitations": "x"}
    elsewhere = {**{k: v for k, v in with_recipe.items() if k != "recipe"},
                 "architecture": {"preset": "tiny", "overrides": {"vision": {"layers": 1}}}}

    @FUZZ
    @given(st.one_of(yaml_file(with_recipe), yaml_file(elsewhere)))
    def check(broken: Broken):
        path.write_bytes(broken.data)
        # A valid entry without weights is refused too (it says how to train one), naming the model.
        assert_clean(["--model", str(path), "--task", "shapes-zeroshot", "--data-dir", str(tmp_path / "no-data")],
                     capsys, (str(path), "fuzz-entry"))

    check()


# --- LVIS annotations ---

def test_lvis_json(tmp_path, capsys):
    from tests.test_lvis_eval import _one_image_set

    ground_truth, detections = _one_image_set()
    annotations, results = tmp_path / "lvis_v1_val.json", tmp_path / "dets.json"
    results.write_text(json.dumps(detections))

    @FUZZ
    @given(json_file(ground_truth))
    def check(broken: Broken):
        annotations.write_bytes(broken.data)
        assert_clean(["detect", "evaluate", "--annotations", str(annotations), "--detections", str(results),
                      "--iou-type", "bbox"], capsys, ("lvis_v1_val.json", "dets.json"),
                     must_refuse=broken.repeats_entry)

    check()
