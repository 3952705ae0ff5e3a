"""The generated tasks of CLIP_benchmark's webdataset sets and DataComp's suite (scripts/make_suite_tasks.py): every
task loads, the committed class names and prompts are CLIP_benchmark's (its installed files and, where it builds them
without downloads, its dataset builder as the oracle), a set written by CLIP_benchmark's exporter evaluates to what
CLIP_benchmark's `evaluate` scores on it (classes and prompts read from the set: `from_data`), and refused tasks and
suite entries refuse in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from reclip_eval.classifier.templates import read_templates
from reclip_eval.data.imagefolder import read_class_list
from reclip_eval.errors import DataError, RefusedTaskError
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.set_lists import FROM_DATA
from reclip_eval.eval.task_kinds import task_kind
from reclip_eval.eval.tasks import TASK_SUBFOLDERS, list_tasks, load_task, task_aliases
from reclip_eval.paths import data_folder
from reclip_eval.zoo.resolve import load_adapter
from tests import test_peers_clip_benchmark as peers

clip_benchmark_zeroshot = peers.clip_benchmark_zeroshot  # CLIP_benchmark's accuracy() with .item() (numpy >= 2.4)

GENERATED = [t for t in list_tasks() if Path(t.path).parent.name in TASK_SUBFOLDERS]
SUITES = sorted((data_folder("tasks") / "suites").glob("*.yaml"))
SHAPES = load_task("shapes-zeroshot")


def _cb_json(name: str) -> dict:
    from clip_benchmark.datasets import builder

    return json.loads((Path(builder.__file__).parent / name).read_text())


def test_every_generated_task_loads_or_refuses_in_one_line(tmp_path):
    assert len(GENERATED) >= 40  # CLIP_benchmark's 34 sets beyond the paper's tasks, DataComp's 6 others
    for task in GENERATED:
        if task.refused is None:
            assert load_task(task.name) == task
            continue
        with pytest.raises(RefusedTaskError) as refusal:
            load_task(task.name)
        assert "\n" not in str(refusal.value) and task.refused in str(refusal.value)
    # A task YAML with `refused:` (none of the generated ones now: WinoGAViL, the one refused entry, has no task) is
    # one line giving the reason, and still listed.
    path = tmp_path / "winogavil.yaml"
    path.write_text(Path(load_task("fmow").path).read_text().replace("name: fmow", "name: winogavil")
                    + "refused: scored by DataComp's own association game\n")
    with pytest.raises(RefusedTaskError, match=r"^task 'winogavil' is refused: scored by DataComp's own association "
                                               r"game \([^\n]*winogavil.yaml\)$"):
        load_task(str(path))
    assert load_task(str(path), refused_ok=True).refused
    # Upstream names reach the same tasks: CLIP_benchmark's vtab/ names, DataComp's keys.
    aliases = task_aliases()
    assert aliases["vtab/dtd"] == "dtd" and aliases["wilds/camelyon17"] == "camelyon17"
    assert load_task("vtab/pets").name == "pets"


def test_committed_lists_are_clip_benchmarks():
    """classes_copy: en_classnames.json under the key CLIP_benchmark's builder uses for that set (vtab/caltech101 takes
    caltech101_vtab); templates_copy: its templates json, found as its builder finds them (the set's full name, its
    short name, else imagenet1k's), `{c}` written `{}`."""
    classnames = _cb_json("en_classnames.json")
    templates = _cb_json("en_zeroshot_classification_templates.json")
    builder_key = {"caltech101": "caltech101_vtab"}
    checked = 0
    for task in GENERATED:
        if task.classes_copy and task.name != "imagenet-o":  # imagenet-o: its builder, below
            names = read_class_list(task.resource(task.classes_copy))
            assert list(names.names) == classnames[builder_key.get(task.name, task.name)], task.name
            assert names.ids == tuple(str(i) for i in range(len(names.ids)))  # the labels' indices
            checked += 1
        if task.templates_copy:
            full = task.description.split("wds/")[1].split(" ")[0]  # the CLIP_benchmark name the description gives
            key = next(k for k in (full, full.split("/")[-1], "imagenet1k") if k in templates)
            assert read_templates(task.resource(task.templates_copy)) == [t.replace("{c}", "{}")
                                                                           for t in templates[key]], task.name
    assert checked >= 13


def test_imagenet_o_lists_equal_clip_benchmarks_builder(tmp_path):
    """CLIP_benchmark builds imagenet-o from any image folder (its class names are imagenet1k's, masked by its
    imagenet-o WordNet ids): its dataset's classes and templates are the oracle."""
    from clip_benchmark.datasets.builder import build_dataset
    from PIL import Image

    (tmp_path / "imagenet-o" / "n01443537").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "imagenet-o" / "n01443537" / "a.png")
    theirs = build_dataset("imagenet-o", root=str(tmp_path / "imagenet-o"), split="test", download=False)
    task = load_task("imagenet-o")
    assert list(read_class_list(task.resource(task.classes_copy)).names) == theirs.classes
    assert len(theirs.classes) == 200
    assert read_templates(task.resource(task.templates_copy)) == [t.replace("{c}", "{}") for t in theirs.templates]


class _Exportable(list):
    classes: list[str] | None = None
    templates: list[str] | None = None


def _export(synth_dir: Path, out: Path, class_names: list[str], templates: list[str]) -> Path:
    """The synthetic zero-shot images (their first len(class_names) classes) through CLIP_benchmark's exporter, with
    these class names and templates as the set's own files."""
    from clip_benchmark.webdataset_builder import convert_dataset, path_to_bytes

    ids = read_class_list(SHAPES.resource(SHAPES.classes)).ids[:len(class_names)]
    samples = _Exportable((str(path), index) for index, class_id in enumerate(ids)
                          for path in sorted((synth_dir / "shapes-zeroshot" / "val" / class_id).iterdir()))
    samples.classes, samples.templates = class_names, templates
    convert_dataset(samples, "test", str(out), transform=path_to_bytes, max_count=40, verbose=False)
    return out


@pytest.fixture(scope="module")
def adapter():
    return load_adapter("reclip-demo")


def _ours_and_theirs(zeroshot, adapter, root: Path, task_name: str) -> tuple[dict, dict]:
    """Our evaluation of the task on the set at `root`, and CLIP_benchmark's evaluate through its own wds loader."""
    from clip_benchmark.datasets.builder import build_wds_dataset

    ours = evaluate(adapter, load_task(task_name), EvalOptions(data_dir=root.parent, workers=0))
    data = build_wds_dataset(f"wds_{task_name}", adapter.transform, split="test", data_dir=str(root))
    theirs = zeroshot.evaluate(peers._AsModel(adapter), DataLoader(data, batch_size=64), adapter.tokenize,
                               data.classes, data.templates, device="cpu", amp=False)
    return ours, theirs


def _assert_equal_metrics(ours: dict, theirs: dict) -> None:
    assert ours["metrics"]["top1"] == pytest.approx(theirs["acc1"], abs=1e-6)
    assert ours["metrics"]["top5"] == pytest.approx(theirs["acc5"], abs=1e-6)
    assert ours["metrics"]["mean_per_class_recall"] == pytest.approx(theirs["mean_per_class_recall"], abs=1e-6)


def test_a_set_with_its_own_lists_equals_clip_benchmark(clip_benchmark_zeroshot, synth_dir, adapter, tmp_path):
    """cifar10 has no committed class list (its names are torchvision's): the set's classnames.txt and templates
    are read. Written with the synthetic world's class names, so that a trained model scores well above chance."""
    shapes = read_class_list(SHAPES.resource(SHAPES.classes))
    cb_templates = _cb_json("en_zeroshot_classification_templates.json")["cifar10"]
    root = _export(synth_dir, tmp_path / "cifar10", list(shapes.names), cb_templates)
    task = load_task("cifar10")
    assert (task.classes, task.classes_copy, task.templates) == (FROM_DATA, None, FROM_DATA)
    ours, theirs = _ours_and_theirs(clip_benchmark_zeroshot, adapter, root, "cifar10")
    assert int((root / "test" / "nshards.txt").read_text()) > 1
    assert ours["metrics"]["top1"] > 0.3  # the set's names reached the classifier (a wrong list scores chance)
    assert ours["prompts"]["templates"] == len(cb_templates)
    _assert_equal_metrics(ours, theirs)
    # Without the set's classnames.txt there is no class list: one line naming the file.
    (root / "classnames.txt").unlink()
    with pytest.raises(DataError, match=rf"^{root / 'classnames.txt'}: missing; task 'cifar10' reads its classes "
                                        r"from the set \(classes: from_data\)[^\n]*$"):
        evaluate(adapter, task, EvalOptions(data_dir=tmp_path, workers=0))


def test_a_blank_class_name_is_a_class_as_in_clip_benchmark(clip_benchmark_zeroshot, synth_dir, adapter, tmp_path):
    """CLIP_benchmark's own names for vtab/clevr_closest_object_distance have an empty one (class 3): the exported
    classnames.txt has a blank line, which CLIP_benchmark reads as a class; so do we (no committed copy can hold it)."""
    names = _cb_json("en_classnames.json")["clevr_closest_object_distance"]
    assert "" in names[1:-1]
    templates = _cb_json("en_zeroshot_classification_templates.json")["clevr_closest_object_distance"]
    root = _export(synth_dir, tmp_path / "clevr_closest_object_distance", names, templates)
    ours, theirs = _ours_and_theirs(clip_benchmark_zeroshot, adapter, root, "clevr_closest_object_distance")
    assert ours["counts"]["classes"] == len(names)
    assert ours["counts"]["images_evaluated"] == 3 * len(names)
    _assert_equal_metrics(ours, theirs)


def test_the_committed_copy_reads_class_folders_as_the_set(synth_dir, adapter, tmp_path):
    """fer2013's set, written by the exporter with CLIP_benchmark's names and prompts, and the same images as class
    folders (read with the committed copy): the same metrics, so the copy is the set's lists."""
    task = load_task("fer2013")
    names = list(read_class_list(task.resource(task.classes_copy)).names)
    cb_templates = _cb_json("en_zeroshot_classification_templates.json")["fer2013"]
    wds = _export(synth_dir, tmp_path / "wds" / "fer2013", names, cb_templates)
    folders = tmp_path / "folders" / "fer2013" / "test"
    ids = read_class_list(SHAPES.resource(SHAPES.classes)).ids
    for index in range(len(names)):
        shutil.copytree(synth_dir / "shapes-zeroshot" / "val" / ids[index], folders / str(index))
    from_set = evaluate(adapter, task, EvalOptions(data_dir=wds.parent, workers=0))
    from_copy = evaluate(adapter, task, EvalOptions(data_dir=folders.parent.parent, workers=0))
    assert (from_set["task"]["layout"], from_copy["task"]["layout"]) == ("clip_benchmark_wds", "class_folders")
    assert from_set["prompts"] == from_copy["prompts"]
    assert from_set["metrics"] == pytest.approx(from_copy["metrics"], abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_mean_per_class_recall_is_sklearns_balanced_accuracy(n_images, n_classes, seed):
    """DataComp's mean_per_class_recall is sklearn's balanced_accuracy_score of the top-1 predictions."""
    import torch
    from sklearn.metrics import balanced_accuracy_score

    from reclip_eval.eval.metrics import classification_metrics

    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n_images, n_classes, generator=generator)
    targets = torch.randint(0, n_classes, (n_images,), generator=generator)
    expected = balanced_accuracy_score(targets.numpy(), logits.argmax(1).numpy())
    assert classification_metrics(logits, targets)["mean_per_class_recall"] == pytest.approx(expected, abs=1e-6)


# The metric keys each task kind reports (a suite's `metric` must name them).
KIND_METRICS = {"zeroshot_classification": {"top1", "top5", "mean_per_class_recall"},
                "retrieval": {f"{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}, "multilabel": {"mAP"},
                "zeroshot_groups": {"top1", "top5", "mean_per_class_recall", "f1_macro", "top1_worst_group",
                                    "top5_worst_group"}}


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_suite_files_name_loadable_tasks_and_their_metrics(path):
    suite = yaml.safe_load(path.read_text())
    assert suite["name"] == path.stem and len(suite["source"]["commit"]) == 40
    names = set()
    for entry in suite["tasks"]:
        if entry["refused"] is not None:
            assert "\n" not in entry["refused"] and entry["metric"] is None
        if entry["task"] is None:
            assert entry["refused"], entry
            continue
        task = load_task(entry["task"], refused_ok=True)
        names.add(task.name)
        assert task_kind(task.kind).name in KIND_METRICS
        if entry["metric"] is not None:
            assert set(entry["metric"]) <= KIND_METRICS[task.kind], entry
            assert task.refused is None  # a scored entry's task runs
    for average, members in suite["averages"].items():
        assert set(members) <= names | {e["key"] for e in suite["tasks"]}, average


def test_datacomp_suite_has_its_38_scored_tasks_and_averages():
    suite = yaml.safe_load((data_folder("tasks") / "suites" / "datacomp.yaml").read_text())
    assert len(suite["tasks"]) == 38 and len(suite["unscored"]) == 2
    assert suite["averages"]["Average"] == [e["task"] or e["key"] for e in suite["tasks"]]
    assert len(suite["averages"]["VTAB"]) == 13 and len(suite["averages"]["ImageNet dist. shifts"]) == 6
    by_key = {e["key"]: e for e in suite["tasks"]}
    assert by_key["vtab/pets"]["metric"] == ["mean_per_class_recall"]
    assert by_key["retrieval/mscoco_2014_5k_test_image_text_retrieval"]["metric"] == ["i2t_R@1", "t2i_R@1"]
    refused = {key for key, entry in by_key.items() if entry["refused"]}
    # Refused with the reason: each refused task's YAML says the same.
    for key in refused - {"misc/winogavil"}:
        assert load_task(by_key[key]["task"], refused_ok=True).refused == by_key[key]["refused"]


# DataComp's WILDS / fairness scoring (eval_utils/wilds_eval.py, fairness_eval.py) with WILDS' own grouper and
# metrics as the oracle: its evaluators are WILDSDataset subclasses holding the metadata table.
def _offline_wilds() -> None:
    """Importing wilds starts a thread asking PyPI whether it is outdated when the `outdated` package is there:
    tests stay offline (its ImportError path skips the check)."""
    import sys

    if "wilds" not in sys.modules:
        sys.modules.setdefault("outdated", None)


def _wilds_evaluator(metadata, fields):
    _offline_wilds()
    from wilds.datasets.wilds_dataset import WILDSDataset

    class Evaluator(WILDSDataset):
        def __init__(self):  # as DataComp's WILDSEvaluator: only the metadata table and its field names
            self._metadata_array = metadata
            self._metadata_fields = fields

    return Evaluator()


def _avg_over_groups(v, g, n_groups):
    """DataComp's stand-in for WILDS' torch_scatter helper (eval_utils/wilds_eval.py replaces it the same way): the
    per-group mean by scatter-add, and the group counts."""
    import torch
    from wilds.common.utils import get_counts

    counts = get_counts(g, n_groups)
    sums = torch.zeros(n_groups, dtype=torch.float, device=v.device).scatter_add_(0, g, v.float())
    return sums / counts, counts


def _wilds_worst_group(correct_fn, predictions, targets, metadata, fields, field):
    """DataComp's worst-group value: WILDS' group-wise metric under a CombinatorialGrouper on `field`."""
    _offline_wilds()
    import wilds.common.metrics.metric
    import wilds.common.utils
    from wilds.common.grouper import CombinatorialGrouper
    from wilds.common.metrics.all_metrics import Accuracy

    wilds.common.utils.avg_over_groups = wilds.common.metrics.metric.avg_over_groups = _avg_over_groups

    class Metric(Accuracy):
        def _compute_element_wise(self, y_pred, y_true):
            return correct_fn(y_pred, y_true).float()

    evaluator = _wilds_evaluator(metadata, fields)
    grouper = CombinatorialGrouper(dataset=evaluator, groupby_fields=[field])
    results = Metric(name="acc").compute_group_wise(predictions, targets, grouper.metadata_to_group(metadata),
                                                    grouper.n_groups)
    return results["acc_wg"]


def _top1(y_pred, y_true):
    return y_pred == y_true


def _top5(y_pred, y_true):  # DataComp's TopKAccuracy: the label among the k predictions
    return (y_pred == y_true.unsqueeze(-1)).any(-1)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(2, 7), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_group_metrics_equal_wilds(n_images, n_classes, n_groups, seed):
    import torch

    from reclip_eval.eval.group_metrics import macro_f1, worst_group_accuracy

    _offline_wilds()
    from wilds.common.metrics.all_metrics import F1

    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n_images, n_classes, generator=generator)
    targets = torch.randint(0, n_classes, (n_images,), generator=generator)
    # Group values with gaps (empty groups below the largest), as a region table seen in part.
    metadata = torch.stack([2 * torch.randint(0, n_groups, (n_images,), generator=generator),
                            torch.zeros(n_images, dtype=torch.long)], dim=1)
    predictions, top5 = logits.argmax(1), logits.topk(min(5, n_classes), dim=1).indices
    for correct_fn, ours_correct, pred in ((_top1, predictions == targets, predictions),
                                           (_top5, (top5 == targets.view(-1, 1)).any(1), top5)):
        theirs = _wilds_worst_group(correct_fn, pred, targets, metadata, ["region", "y"], "region")
        assert worst_group_accuracy(ours_correct, metadata[:, 0])[0] == pytest.approx(theirs, abs=1e-6)
    theirs_f1 = F1(average="macro").compute(predictions, targets)["F1-macro_all"]
    assert macro_f1(predictions, targets) == pytest.approx(theirs_f1, abs=1e-6)


def _add_metadata(root: Path, metadata_of) -> None:
    """Give every sample of the set an npy metadata member (as DataComp's WILDS sets carry one beside its cls)."""
    import io

    import numpy as np

    from tests.test_clip_benchmark_wds import _rewrite_shard

    def add(name, data):
        if not name.endswith(".cls"):
            return [(name, data)]
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(metadata_of(name.split(".")[0], int(data)), dtype=np.int64))
        return [(name, data), (name.replace(".cls", ".npy"), buffer.getvalue())]

    for shard in sorted((root / "test").glob("*.tar")):
        _rewrite_shard(shard, add)


def test_fmow_equals_datacomps_scoring_on_an_exported_set(clip_benchmark_zeroshot, synth_dir, adapter, tmp_path):
    """fmow (kind zeroshot_groups, groups: region) on a set written by CLIP_benchmark's exporter plus metadata:
    top-1 as CLIP_benchmark, worst-region accuracy, worst-group top-5 and macro F1 as DataComp computes them from
    CLIP_benchmark's logits, its wds loader's (cls, npy) tuples and WILDS' metrics."""
    import hashlib

    import torch
    import webdataset as wds
    from clip_benchmark.datasets.builder import build_wds_dataset

    shapes = read_class_list(SHAPES.resource(SHAPES.classes))
    templates = _cb_json("en_zeroshot_classification_templates.json")["imagenet1k"][:4]
    root = _export(synth_dir, tmp_path / "fmow", list(shapes.names), templates)
    fields = ["region", "year", "y"]  # DataComp's FMoWEvaluator._metadata_fields

    def metadata_of(key: str, label: int) -> list[int]:
        digest = hashlib.sha256(key.encode()).digest()
        return [(digest[0] % 3) * 2, 2016 - 2002 + digest[1] % 2, label]  # regions 0, 2, 4: gaps, as in part

    _add_metadata(root, metadata_of)
    ours = evaluate(adapter, load_task("fmow"), EvalOptions(data_dir=tmp_path, workers=0))

    data = build_wds_dataset("wds_fmow", adapter.transform, split="test", data_dir=str(root))
    model = peers._AsModel(adapter)
    classifier = clip_benchmark_zeroshot.zero_shot_classifier(model, adapter.tokenize, data.classes, data.templates,
                                                             "cpu", amp=False)  # float32 on both sides
    logits, target = clip_benchmark_zeroshot.run_classification(model, classifier, DataLoader(data, batch_size=64),
                                                                "cpu", amp=False)
    shards = [str(root / "test" / f"{i}.tar") for i in range(int((root / "test" / "nshards.txt").read_text()))]
    rows = list(wds.WebDataset(shards, shardshuffle=False).decode().to_tuple("cls", "npy"))
    metadata = torch.from_numpy(__import__("numpy").stack([npy for _, npy in rows]))
    assert [cls for cls, _ in rows] == target.tolist()  # the two loaders see the samples in the same order
    predictions, top5 = logits.argmax(1), logits.topk(5, dim=1).indices
    worst_region = _wilds_worst_group(_top1, predictions, target, metadata, fields, "region")
    worst_top5 = _wilds_worst_group(_top5, top5, target, metadata, fields, "region")
    from wilds.common.metrics.all_metrics import F1

    assert ours["task"]["kind"] == "zeroshot_groups" and ours["counts"]["groups"] == 3
    per_group = ours["task"]["groups"]["per_group"]
    assert ours["task"]["groups"]["field"] == "region" and set(per_group) == {"0", "2", "4"}
    assert sum(g["images"] for g in per_group.values()) == ours["counts"]["images_evaluated"]
    assert ours["metrics"]["top1"] == pytest.approx((predictions == target).float().mean().item(), abs=1e-6)
    assert ours["metrics"]["top1_worst_group"] < ours["metrics"]["top1"]  # the groups really differ
    assert ours["metrics"]["top1_worst_group"] == pytest.approx(worst_region, abs=1e-6)
    assert ours["metrics"]["top5_worst_group"] == pytest.approx(worst_top5, abs=1e-6)
    assert ours["metrics"]["f1_macro"] == pytest.approx(
        F1(average="macro").compute(predictions, target)["F1-macro_all"], abs=1e-6)
    # A set without the metadata: one line naming the shard and sample.
    bare = _export(synth_dir, tmp_path / "bare" / "fmow", list(shapes.names), templates)
    with pytest.raises(DataError, match=rf"^{bare / 'test'}/\d+\.tar: sample \w+: no \.npy metadata member[^\n]*$"):
        evaluate(adapter, load_task("fmow"), EvalOptions(data_dir=bare.parent, workers=0))


def test_voc2007_multilabel_reads_the_sets_lists_and_equals_clip_benchmark(clip_benchmark_zeroshot, synth_dir,
                                                                           adapter, tmp_path):
    """The multi-label task with the set's own classnames.txt and templates (CLIP_benchmark's exporter writes them
    beside the npy label vectors): mAP as CLIP_benchmark's evaluate scores the same shards."""
    import random

    import numpy as np
    from clip_benchmark.datasets.builder import build_wds_dataset
    from clip_benchmark.webdataset_builder import convert_dataset, path_to_bytes

    shapes = read_class_list(SHAPES.resource(SHAPES.classes))
    draw, samples = random.Random(1), _Exportable()
    for index, class_id in enumerate(shapes.ids):
        for number, path in enumerate(sorted((synth_dir / "shapes-zeroshot" / "val" / class_id).iterdir())):
            vector = np.zeros(len(shapes.ids), dtype=np.int64)
            vector[index] = 1
            if number % 2 == 0:
                vector[draw.randrange(len(shapes.ids))] = 1
            samples.append((str(path), vector))
    samples.classes = list(shapes.names)
    samples.templates = _cb_json("en_zeroshot_classification_templates.json")["voc2007_multilabel"]
    root = tmp_path / "voc2007_multilabel"
    convert_dataset(samples, "test", str(root), transform=path_to_bytes, max_count=40, multilabel=True, verbose=False)
    ours = evaluate(adapter, load_task("voc2007_multilabel"), EvalOptions(data_dir=tmp_path, workers=0))
    data = build_wds_dataset("wds_voc2007_multilabel", adapter.transform, split="test", data_dir=str(root))
    theirs = clip_benchmark_zeroshot.evaluate(peers._AsModel(adapter), DataLoader(data, batch_size=64),
                                              adapter.tokenize, data.classes, data.templates, device="cpu", amp=False)
    assert ours["task"]["layout"] == "clip_benchmark_wds_multilabel" and ours["counts"]["classes"] == len(shapes.ids)
    assert 0.1 < ours["metrics"]["mAP"] < 1
    assert ours["metrics"]["mAP"] == pytest.approx(theirs["mean_average_precision"], abs=1e-6)


@pytest.mark.parametrize(("task", "folder"), [("dtd", "wds_vtab-dtd"), ("dtd", "wds_vtab-dtd_test"),
                                              ("dollar_street", "wds_dollar_street_test"), ("imagenet-o", "imagenet-o"),
                                              ("imagenet", "wds_imagenet1k_test"), ("imagenet-sketch", "wds_imagenet_sketch")])
def test_upstream_download_folders_are_found_under_the_data_root(task, folder, tmp_path):
    """A data root as CLIP_benchmark's sets are named (wds_vtab-dtd) or as DataComp's download_evalsets.py fills it
    (wds_vtab-dtd_test, wds_dollar_street_test) serves the tasks as it is."""
    from reclip_eval.eval.tasks import locate_task_data

    (tmp_path / folder / "test").mkdir(parents=True)
    (tmp_path / folder / "test" / "nshards.txt").write_text("1\n")
    found, layout = locate_task_data(load_task(task), tmp_path)
    assert (found, layout.kind) == (tmp_path / folder, "clip_benchmark_wds")
