"""Every class of bad input, through the real command line: exit code 2, no traceback, and the file, key or value
that is wrong named in the message (issue #12's table).

Each row builds its command line (and whatever broken files it needs) inside a temp folder, runs `main(argv)` in
this process and checks stderr. A row's `setup` gets a `Ctx` with the temp folder and lazily built fixtures (a tiny
checkpoint, a small synthetic world), so a row only pays for what it uses.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from reclip_eval.cli.main import main


@dataclass
class Ctx:
    tmp: Path
    request: pytest.FixtureRequest

    @property
    def checkpoint(self) -> Path:
        """A private copy of the tiny random checkpoint, free to break."""
        copy = self.tmp / "ckpt"
        if not copy.exists():
            shutil.copytree(self.request.getfixturevalue("tiny_checkpoint"), copy)
        return copy

    @property
    def synth(self) -> Path:
        """The session's small synthetic world (read-only: copy what a row breaks)."""
        return self.request.getfixturevalue("synth_dir")

    def write_json(self, name: str, data) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
        return path


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Ctx], list[str]]  # returns argv; may write broken files under ctx.tmp
    expect: tuple[str, ...]  # substrings the error message must hold (file, key, value, what was expected)


def _edit_config(ctx: Ctx, edit: Callable[[dict], None]) -> Path:
    config_path = ctx.checkpoint / "config.json"
    config = json.loads(config_path.read_text())
    edit(config)
    config_path.write_text(json.dumps(config))
    return ctx.checkpoint


def _lvis_evaluate(ctx: Ctx, edit_gt: Callable[[dict], object] = lambda gt: None,
                   edit_dets: Callable[[list], object] = lambda dets: None,
                   as_json: Callable[[list], object] = lambda dets: dets) -> list[str]:
    """`detect evaluate` on a two-image LVIS set (tests/test_lvis_eval.py) broken by the in-place edits (their
    return values are ignored); `as_json` turns the detections into what is written."""
    from tests.test_lvis_eval import _one_image_set

    ground_truth, detections = _one_image_set()
    edit_gt(ground_truth)
    edit_dets(detections)
    return ["detect", "evaluate", "--annotations", str(ctx.write_json("gt.json", ground_truth)),
            "--detections", str(ctx.write_json("dets.json", as_json(detections))), "--iou-type", "bbox"]


def _eval_argv(ctx: Ctx, task: str, data: Path) -> list[str]:
    return ["--model", str(ctx.checkpoint), "--task", task, "--data-dir", str(data), "--workers", "0",
            "--output", str(ctx.tmp / "results")]


def _retrieval_with(ctx: Ctx, edit: Callable[[dict], object] = lambda d: None, folder: str = "shapes-retrieval",
                    annotations: str = "dataset_shapes.json", images: str = ".") -> Path:
    """A copy of the synthetic retrieval set as `folder/annotations` (images under `folder/images`), its Karpathy
    JSON changed by `edit`; returns the data root."""
    source, target = ctx.synth / "shapes-retrieval", ctx.tmp / "data" / folder
    shutil.copytree(source / "images", target / images / "images")
    data = json.loads((source / "dataset_shapes.json").read_text())
    edit(data)
    (target / annotations).write_text(json.dumps(data))
    return ctx.tmp / "data"


def _retrieval_case(edit: Callable[[dict], object]) -> Callable[[Ctx], list[str]]:
    return lambda ctx: _eval_argv(ctx, "shapes-retrieval", _retrieval_with(ctx, edit))


def _corrupt_retrieval(ctx: Ctx) -> list[str]:
    data = _retrieval_with(ctx)
    for image in (data / "shapes-retrieval" / "images").glob("*.jpg"):
        image.write_bytes(b"not a jpeg")
    return _eval_argv(ctx, "shapes-retrieval", data)


def _set_split(data: dict, split: str) -> None:
    for entry in data["images"]:
        entry["split"] = split



def _nan_weights(ctx: Ctx) -> Path:
    """The tiny checkpoint with one NaN in its image projection."""
    from safetensors.torch import load_file, save_file

    weights = ctx.checkpoint / "model.safetensors"
    state = load_file(str(weights))
    state["visual.proj.weight"][0, 0] = float("nan")
    save_file(state, str(weights), metadata={"format": "pt"})
    return ctx.checkpoint


def _train_into(ctx: Ctx, *extra: str, user_file: bool = False) -> list[str]:
    """`train tiny-shapes` into ctx.tmp/out (holding a user's file when asked), two steps at most."""
    out = ctx.tmp / "out"
    if user_file:
        out.mkdir()
        (out / "precious.txt").write_text("the user's")
    return ["train", "tiny-shapes", "--out", str(out), "--data-dir", str(ctx.synth), "--device", "cpu", "--workers",
            "0", "stages.0.steps=1", "stages.0.warmup_steps=0", "stages.1.steps=1", "stages.1.warmup_steps=0", *extra]


def _flat_imagenet(ctx: Ctx, csv: str | None = None, table=None, truth: str | None = None) -> list[str]:
    """`--task imagenet` on six flat val images labelled by a LOC_val_solution.csv (`csv`: its text, given the
    true one) or, when `csv` is None, by a devkit (meta.mat's synsets `table` and the ground truth's text `truth`,
    the true ones unless given)."""
    from tests.layout_files import devkit, flat_imagenet, loc_csv_text

    folder = ctx.tmp / "data" / "imagenet"
    rows = flat_imagenet(folder)
    if csv is not None:
        (folder / "LOC_val_solution.csv").write_text(csv.replace("{true}", loc_csv_text(rows)))
    else:
        labels = devkit(folder, rows, table)
        if truth is not None:
            (labels / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text(truth)
    return _eval_argv(ctx, "imagenet", ctx.tmp / "data")


def _broken_meta(ctx: Ctx, data: bytes) -> list[str]:
    argv = _flat_imagenet(ctx)
    (ctx.tmp / "data" / "imagenet" / "ILSVRC2012_devkit_t12" / "data" / "meta.mat").write_bytes(data)
    return argv


def _synsets(*entries):
    from tests.layout_files import synsets

    return synsets(list(entries))


def _hf_imagenet(ctx: Ctx, names: list[str] | None = None, garbage: bool = False) -> list[str]:
    """`--task imagenet` on a `datasets` folder `imagenet/hf` (3 images; a ClassLabel of `names` if given), or on
    a folder of that name holding no dataset."""
    from tests.layout_files import hf_folder

    folder = ctx.tmp / "data" / "imagenet"
    if garbage:
        (folder / "hf").mkdir(parents=True)
        (folder / "hf" / "dataset_dict.json").write_text('{"splits": ["validation"')
    else:
        hf_folder(folder, [0, 1, 2], names)
    return _eval_argv(ctx, "imagenet", ctx.tmp / "data")


def _hf_data_file_twice(ctx: Ctx) -> list[str]:
    argv = _hf_imagenet(ctx)
    state = ctx.tmp / "data" / "imagenet" / "hf" / "validation" / "state.json"
    data = json.loads(state.read_text())
    data["_data_files"] *= 2
    state.write_text(json.dumps(data))
    return argv


def _class_list_task(ctx: Ctx, class_list: str) -> list[str]:
    """A task of the user's (a YAML path): flat ImageNet images, its own class list `class_list`."""
    task = ctx.tmp / "mytask" / "mytask.yaml"
    task.parent.mkdir()
    (task.parent / "classes.tsv").write_text(class_list)
    (task.parent / "templates.txt").write_text("a photo of a {}.\n")
    task.write_text("name: mytask\nkind: zeroshot_classification\ndescription: x\nget_data: x\n"
                    "classes: classes.tsv\ntemplates: templates.txt\n"
                    "data: {folder: imagenet, layouts: [{kind: flat_loc_csv, split: val}]}\n")
    argv = _flat_imagenet(ctx, csv="{true}")
    return [task.as_posix() if a == "imagenet" else a for a in argv]


def _retrieval_files(ctx: Ctx, task: str, keep: str, edit: Callable[[Path], object]) -> list[str]:
    """`--task flickr30k|mscoco` on tests/test_real_layouts.py's four-image set with only the annotation file
    `keep` of that task's folder, changed by `edit(path)`."""
    from tests.test_real_layouts import _retrieval_fixture

    flickr, coco = _retrieval_fixture(ctx.tmp / "data")
    folder = flickr if task == "flickr30k" else coco
    for other in ("dataset_flickr30k.json", "flickr30k_test_karpathy.txt", "dataset_coco.json",
                  "coco_test_karpathy.json"):
        if other != keep and (folder / other).exists():
            (folder / other).unlink()
    edit(folder / keep)
    return _eval_argv(ctx, task, folder.parent)


def _edit_json(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
    return apply


def _no_nltk_tagger(ctx: Ctx) -> list[str]:
    import nltk

    try:
        nltk.data.find("taggers/averaged_perceptron_tagger_eng/")
        pytest.skip("NLTK's tagger data is installed here")
    except LookupError:
        pass
    return ["train", "tiny-shapes", "--out", str(ctx.tmp / "out"), "--data-dir", str(ctx.tmp / "no-data"),
            "--device", "cpu", "stages.0.text_tokens={kind: syntax, tagger: nltk-perceptron}"]


def _recipe_file(ctx: Ctx, text: str) -> list[str]:
    path = ctx.tmp / "recipe.yaml"
    path.write_text(text)
    return ["config", "show", str(path)]


CASES: list[Case] = [
    # --- command line and names ---
    Case("unknown-task", lambda c: ["--model", "reclip-demo", "--task", "shapes-zeroshott"],
         ("shapes-zeroshott", "Did you mean: shapes-zeroshot")),
    # --- training: out folders, resume, recipes and overrides ---
    Case("train-out-not-a-run", lambda c: _train_into(c, user_file=True),
         ("out", "precious.txt", "not a folder this command wrote", "--resume")),
    Case("train-resume-nothing-there", lambda c: _train_into(c, "--resume"), ("out", "nothing to resume")),
    Case("train-batch-of-one", lambda c: ["config", "show", "tiny-shapes", "stages.0.batch_size=1"],
         ("stages.0.batch_size=1", "stages[0].batch_size: must be >= 2", "contrastive")),
    Case("train-recipe-values", lambda c: _train_into(c, "stages.0.image_size=20", "stages.1.image_size=0",
                                                      "stages.0.optimizer.lr=-1", "data.workers=-1"),
         ("stages.lowres.image_size: 20 is not a multiple of the model's patch size 8", "stages[1].image_size",
          "stages[0].optimizer.lr", "data.workers")),
    Case("train-override-typo", lambda c: ["config", "show", "tiny-shapes", "stages.0.stepz=3"],
         ("command-line override stages.0.stepz=3", "did you mean 'steps'")),
    Case("detect-train-out-not-a-run",
         lambda c: (_train_into(c, user_file=True) and None) or [
             "detect", "train", "--recipe", "detect-shapes", "--backbone", str(c.checkpoint), "--out",
             str(c.tmp / "out"), "--data-dir", str(c.tmp / "data"), "--device", "cpu", "schedule.steps=1",
             "schedule.warmup_steps=0"],
         ("out", "precious.txt", "not a folder this command wrote")),
    Case("detect-train-override-typo",
         lambda c: ["detect", "train", "--recipe", "detect-shapes", "--backbone", str(c.checkpoint), "--out",
                    str(c.tmp / "out"), "schedule.stepz=3"],
         ("command-line override schedule.stepz=3", "did you mean 'steps'")),
    # --- data: shards, images, captions, retrieval ---
    Case("retrieval-null-caption", _retrieval_case(lambda d: d["images"][2]["sentences"][1].update(raw=None)),
         ("dataset_shapes.json", "images[2]", "caption 1 is None", "expected non-empty text")),
    Case("retrieval-numeric-caption", _retrieval_case(lambda d: d["images"][2]["sentences"][0].update(raw=42)),
         ("dataset_shapes.json", "images[2]", "caption 0 is 42")),
    Case("retrieval-empty-caption", _retrieval_case(lambda d: d["images"][1]["sentences"][4].update(raw=" ")),
         ("dataset_shapes.json", "images[1]", "caption 4 is ' '")),
    Case("retrieval-duplicate-image", _retrieval_case(lambda d: d["images"].append(d["images"][0])),
         ("dataset_shapes.json", "again (first at images[0]; captions", "remove it")),
    Case("retrieval-split-missing", _retrieval_case(lambda d: _set_split(d, "val")),
         ("dataset_shapes.json", "no images in split 'test'", "splits: val (")),
    Case("retrieval-images-not-found",
         lambda c: _eval_argv(c, "flickr30k", _retrieval_with(c, folder="flickr30k",
                                                              annotations="dataset_flickr30k.json")),
         ("dataset_flickr30k.json", "0 of the", "in split 'test'", "flickr30k-images/", "does not exist",
          "holds images/")),
    Case("retrieval-every-image-corrupt", _corrupt_retrieval,
         ("none of the", "could be read", "000000.jpg", "UnidentifiedImageError")),
    Case("synth-unknown-set", lambda c: ["data", "synth", "--out", str(c.tmp / "out"), "--sets", "train,bogus"],
         ("'bogus'", "expected some of", "retrieval")),
    Case("synth-zero-samples-per-shard",
         lambda c: ["data", "synth", "--out", str(c.tmp / "out"), "--samples-per-shard", "0"],
         ("--samples-per-shard", ">= 1", "'0'")),
    # --- checkpoints and models ---
    Case("ckpt-config-missing-key",
         lambda c: ["--model", str(_edit_config(c, lambda d: d["vision"].pop("layers"))), "--task", "shapes-zeroshot"],
         ("ckpt/config.json: missing key vision.layers",)),
    Case("ckpt-nan-weights", lambda c: ["--model", str(_nan_weights(c)), "--task", "shapes-zeroshot"],
         ("ckpt/model.safetensors", "visual.proj.weight", "NaN")),
    # Refused at model load, before any data is looked at (none is given).
    Case("ckpt-image-size-not-multiple-of-patch",
         lambda c: ["--model", str(c.checkpoint), "--task", "shapes-zeroshot", "--image-size", "60",
                    "--data-dir", "no-such-data"],
         ("image size 60", "patch size 8", "use 56 or 64")),
    Case("model-is-a-file", lambda c: ["--model", str(c.checkpoint / "model.safetensors"), "--task", "shapes-zeroshot"],
         ("ckpt/model.safetensors: a file, not a checkpoint directory",)),
    Case("openclip-without-weights", lambda c: ["--model", "openclip:ViT-B-32", "--task", "shapes-zeroshot"],
         ("openclip:ViT-B-32", "no weights given", "--random-init")),
    Case("random-init-not-openclip",
         lambda c: ["--model", str(c.checkpoint), "--task", "shapes-zeroshot", "--random-init"],
         ("--random-init applies to openclip:ARCH models only",)),
    # --- evaluation: results files, caches, options ---
    Case("eval-batch-size-zero", lambda c: ["--model", "reclip-demo", "--task", "shapes-zeroshot", "--batch-size", "0"],
         ("--batch-size", "expected an integer >= 1", "'0'")),
    Case("eval-negative-workers", lambda c: ["--model", "reclip-demo", "--task", "shapes-zeroshot", "--workers", "-1"],
         ("--workers", "expected an integer >= 0", "'-1'")),
    # A results file in the way that is no results file: refused before any data is looked at (none is given).
    Case("eval-results-file-not-a-result",
         lambda c: ["--model", c.checkpoint.name, "--task", "shapes-zeroshot", "--workers", "0", "--output",
                    c.write_json("out/ckpt__shapes-zeroshot.json", []).parent.name, "--data-dir", "no-such-data"],
         ("out/ckpt__shapes-zeroshot.json", "not a results file", "--overwrite")),
    # --- label files: an id listed twice, broken formats (all refused before the classifier is built) ---
    Case("loc-csv-conflicting-labels",
         lambda c: _flat_imagenet(c, csv="{true}ILSVRC2012_val_00000001,n01443537 1 2 3 4\n"),
         ("LOC_val_solution.csv", "line 8 lists image 'ILSVRC2012_val_00000001' again (first at line 2",
          "wnid 'n01440764' there, 'n01443537' here")),
    Case("loc-csv-row-without-prediction", lambda c: _flat_imagenet(c, csv="{true}ILSVRC2012_val_00000007\n"),
         ("LOC_val_solution.csv", "line 8", "no PredictionString for image 'ILSVRC2012_val_00000007'")),
    Case("devkit-meta-garbage", lambda c: _broken_meta(c, b"MATLAB 5.0 MAT-file, truncated"),
         ("ILSVRC2012_devkit_t12/data/meta.mat", "not a readable MAT file", "expected the devkit's meta.mat")),
    Case("devkit-meta-incomplete",
         lambda c: _flat_imagenet(c, table=np.array([(7, "n01440764")], dtype=[("ILSVRC2012_ID", "O"),
                                                                             ("WNID", "O")])),
         ("meta.mat", "lacks num_children")),
    Case("devkit-meta-conflicting-ids",
         lambda c: _flat_imagenet(c, table=_synsets((7, "n01440764", 0), (3, "n01443537", 0), (7, "n15075141", 0))),
         ("meta.mat", "synsets[2] lists ILSVRC2012_ID 7 again (first at synsets[0]",
          "wnid 'n01440764' there, 'n15075141' here")),
    Case("devkit-truth-not-integer", lambda c: _flat_imagenet(c, truth="7\n7.0\n3\n3\n5\n5\n"),
         ("ILSVRC2012_validation_ground_truth.txt", "line 2 is '7.0'", "expected one integer")),
    Case("class-list-conflicting-names",
         lambda c: _class_list_task(c, "n01440764\ttench\nn01443537\tgoldfish\nn01440764\ttoilet paper\n"),
         ("mytask/classes.tsv", "line 3 lists class id 'n01440764' again (first at line 1",
          "name 'tench' there, 'toilet paper' here")),
    Case("hf-folder-garbage", lambda c: _hf_imagenet(c, garbage=True),
         ("imagenet/hf", "not a dataset saved with datasets' save_to_disk")),
    Case("hf-folder-other-class-list", lambda c: _hf_imagenet(c, names=["cat", "dog", "fish"]),
         ("imagenet/hf", "'label' is a ClassLabel of 3 names", "['cat', 'dog', 'fish']", "1000 classes")),
    Case("hf-folder-data-file-twice", _hf_data_file_twice,
         ("imagenet/hf", "split 'validation' lists the data file data-00000-of-00001.arrow 2 times")),
    Case("karpathy-numeric-filepath",
         lambda c: _retrieval_files(c, "flickr30k", "dataset_flickr30k.json",
                                    _edit_json(lambda d: d["images"][1].update(filepath=42))),
         ("dataset_flickr30k.json", "images[1] (image 1001.jpg): filepath is 42", "expected a folder name")),
    Case("karpathy-image-again-other-captions",
         lambda c: _retrieval_files(c, "flickr30k", "dataset_flickr30k.json", _edit_json(lambda d: d["images"].append(
             {**d["images"][0], "sentences": [{"raw": "another"}]}))),
         ("dataset_flickr30k.json", "images[5] lists image 1000.jpg again (first at images[0]",
          "captions 'caption 0 of image 1000, seen 0 times.' there, 'another' here")),
    Case("flickr-txt-image-again",
         lambda c: _retrieval_files(c, "flickr30k", "flickr30k_test_karpathy.txt",
                                    lambda p: p.write_text(p.read_text() + "1000.jpg,one more\n")),
         ("flickr30k_test_karpathy.txt", "line 22 lists image 1000.jpg again (first at line 2", "'one more' here")),
    Case("coco-captions-mixed-id-types",
         lambda c: _retrieval_files(c, "mscoco", "coco_test_karpathy.json", _edit_json(
             lambda d: [d["images"][2].update(id="2")] + [a.update(image_id="2") for a in d["annotations"]
                                                          if a["image_id"] == 2])),
         ("coco_test_karpathy.json", "image ids mix integers (e.g. at images[3]) and strings (e.g. at images[2])")),
    Case("coco-captions-conflicting-image-id",
         lambda c: _retrieval_files(c, "mscoco", "coco_test_karpathy.json",
                                    _edit_json(lambda d: d["images"][1].update(id=0))),
         ("coco_test_karpathy.json", "images[1] lists image id 0 again (first at images[0]",
          "'COCO_val2014_1000.jpg' there, 'COCO_val2014_1001.jpg' here")),
    # --- recipes and overrides ---
    Case("recipe-base-not-text", lambda c: _recipe_file(c, "base: [tiny-shapes]\nname: mine\n"),
         ("recipe.yaml", "base: expected the name or file of one recipe (text), got ['tiny-shapes']")),
    Case("slip-temperature-zero", lambda c: ["config", "show", "tiny-shapes", "slip={temperature: 0}"],
         ("slip={temperature: 0}", "slip.temperature: must be > 0")),
    Case("override-negative-stage-index", lambda c: ["config", "show", "tiny-shapes", "stages.-1.steps=3"],
         ("stages.-1.steps=3", "stages is a list of 2; expected an index 0..1", "'-1'")),
    Case("syntax-reduction-without-tagger", _no_nltk_tagger,
         ("nltk-perceptron: Resource 'averaged_perceptron_tagger_eng' not found.",)),
    Case("zoo-entry-empty-checkpoint",
         lambda c: ["--model", str(c.write_json("mine.yaml", {"name": "mine", "description": "x", "checkpoint": "",
                                                              "recipe": "tiny-shapes"})), "--task", "shapes-zeroshot"],
         ("mine.yaml", "checkpoint: '' is empty", "or null")),
    Case("zoo-entry-checkpoint-not-there",
         lambda c: ["--model", str(c.write_json("mine.yaml", {"name": "mine", "description": "x", "checkpoint": "gone",
                                                              "recipe": "tiny-shapes"})), "--task", "shapes-zeroshot"],
         ("mine.yaml: checkpoint 'gone'", "gone")),
    Case("recipe-unknown-preset", lambda c: ["config", "show", "tiny-shapes", "model.preset=vit-b99"],
         ("model.preset=vit-b99", "model.preset: unknown architecture preset 'vit-b99'")),
    # --- detection: LVIS annotations and detections ---
    Case("lvis-conflicting-category-ids", lambda c: _lvis_evaluate(c, lambda gt: gt["categories"][3].update(id=1)),
         ("gt.json", "categories[3] lists category id 1 again (first at categories[0]", "name 'a' there, 'd' here")),
    Case("lvis-repeated-image-id", lambda c: _lvis_evaluate(c, lambda gt: gt["images"][1].update(id=1)),
         ("gt.json", "images[1] lists image id 1 again (first at images[0]")),
    Case("lvis-annotation-id-zero", lambda c: _lvis_evaluate(c, lambda gt: gt["annotations"][0].update(id=0)),
         ("gt.json", "annotations[0] (id 0) has an id below 1", "reads 0 as 'unmatched'")),
    Case("lvis-annotation-text-bbox",
         lambda c: _lvis_evaluate(c, lambda gt: gt["annotations"][2].update(bbox="20 20 40 40")),
         ("gt.json", "annotations[2] (id 3) has bbox '20 20 40 40'", "expected 4 finite numbers")),
    Case("lvis-predict-evaluate-no-federated-fields",  # refused before the detector is loaded or run
         lambda c: [(c.tmp / split).mkdir() for split in ("train2017", "val2017")] and [
                    "detect", "predict", "--model", str(c.tmp / "no-detector-needed"), "--annotations",
                    _lvis_evaluate(c, lambda gt: [i.pop("not_exhaustive_category_ids") for i in gt["images"]])[3],
                    "--out", str(c.tmp / "dets-out.json"), "--evaluate"],
         ("gt.json", "has no not_exhaustive_category_ids", "2 of 2 images")),
    Case("lvis-no-federated-fields",
         lambda c: _lvis_evaluate(c, lambda gt: [i.pop("neg_category_ids") for i in gt["images"]]),
         ("gt.json", "image 0 (id 1) has no neg_category_ids", "2 of 2 images", "--allow-missing-federated-fields")),
    Case("lvis-detections-dict", lambda c: _lvis_evaluate(c, as_json=lambda d: {"results": d}),
         ("dets.json", "expected a JSON list", "got an object with keys ['results']")),
    Case("lvis-negative-width", lambda c: _lvis_evaluate(c, edit_dets=lambda d: d[1]["bbox"].__setitem__(2, -20)),
         ("dets.json", "entry 1 (image_id 1)", "negative width or height", "1 of 3 entries")),
    Case("lvis-nan-score", lambda c: _lvis_evaluate(c, edit_dets=lambda d: d[2].update(score=float("nan"))),
         ("dets.json", "entry 2 (image_id 2)", "score nan is not a finite number", "1 of 3 entries")),
    Case("lvis-string-score", lambda c: _lvis_evaluate(c, edit_dets=lambda d: d[0].update(score="high")),
         ("dets.json", "entry 0 (image_id 1)", "score 'high'", "1 of 3 entries")),
    Case("lvis-missing-score", lambda c: _lvis_evaluate(c, edit_dets=lambda d: d[0].pop("score")),
         ("dets.json", "entry 0 (image_id 1) has no score", "1 of 3 entries")),
    Case("lvis-three-number-bbox", lambda c: _lvis_evaluate(c, edit_dets=lambda d: d[0]["bbox"].pop()),
         ("dets.json", "entry 0 (image_id 1)", "is not 4 finite numbers", "1 of 3 entries")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_error(case: Case, tmp_path, request, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing a row runs may write into the repository
    argv = case.setup(Ctx(tmp_path, request))
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, f"exit code {code}, stderr:\n{err}"
    assert "Traceback" not in err
    for expected in case.expect:
        assert expected in err, f"{expected!r} not in:\n{err}"
