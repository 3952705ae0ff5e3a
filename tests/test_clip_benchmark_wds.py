"""CLIP_benchmark's webdataset eval sets (layouts clip_benchmark_wds and clip_benchmark_wds_retrieval): sets written by
CLIP_benchmark's own exporter (`clip_benchmark.webdataset_builder`) from the synthetic world score what CLIP_benchmark's
`evaluate` scores on the same shards through its own wds loader (`build_wds_dataset`), and the reader refuses, in one
line naming the file, what would make the numbers wrong. CLIP_benchmark's accuracy() snag on numpy >= 2.4 is pinned
around by the `clip_benchmark_zeroshot` fixture of test_peers_clip_benchmark.py (reused here).
"""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from reclip_eval.classifier.templates import read_templates
from reclip_eval.data.imagefolder import read_class_list
from reclip_eval.errors import DataError
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task, locate_task_data
from reclip_eval.zoo.resolve import load_adapter
from tests import test_peers_clip_benchmark as peers

# CLIP_benchmark's accuracy() with .item() for numpy >= 2.4 (the peers test's fixture), and its model wrapper.
clip_benchmark_zeroshot = peers.clip_benchmark_zeroshot
_AsModel = peers._AsModel

SHAPES = load_task("shapes-zeroshot")
SHARD_SIZE = 40  # the exporter's max_count: several shards per set


class _Exportable(list):
    """What CLIP_benchmark's convert_dataset takes: (image, label) pairs with `.classes` and `.templates`."""

    classes: list[str] | None = None
    templates: list[str] | None = None


def _export_classification(synth_dir: Path, out: Path) -> Path:
    from clip_benchmark.webdataset_builder import convert_dataset, path_to_bytes

    classes = read_class_list(SHAPES.resource(SHAPES.classes))
    samples = _Exportable((str(path), index) for index, class_id in enumerate(classes.ids)
                          for path in sorted((synth_dir / "shapes-zeroshot" / "val" / class_id).iterdir()))
    samples.classes = list(classes.names)
    samples.templates = [t.replace("{}", "{c}") for t in read_templates(SHAPES.resource(SHAPES.templates))]
    convert_dataset(samples, "test", str(out), transform=path_to_bytes, max_count=SHARD_SIZE, verbose=False)
    return out


def _export_multilabel(synth_dir: Path, out: Path) -> Path:
    """The zeroshot images with their class plus, for every third image, a second one drawn at random."""
    import random

    import numpy as np
    from clip_benchmark.webdataset_builder import convert_dataset, path_to_bytes

    classes = read_class_list(SHAPES.resource(SHAPES.classes))
    draw = random.Random(0)
    samples = _Exportable()
    for index, class_id in enumerate(classes.ids):
        for number, path in enumerate(sorted((synth_dir / "shapes-zeroshot" / "val" / class_id).iterdir())):
            vector = np.zeros(len(classes.ids), dtype=np.int64)
            vector[index] = 1
            if number % 3 == 0:
                vector[draw.randrange(len(classes.ids))] = 1
            samples.append((str(path), vector))
    samples.classes = list(classes.names)
    convert_dataset(samples, "test", str(out), transform=path_to_bytes, max_count=SHARD_SIZE, multilabel=True,
                    verbose=False)
    return out


def _export_retrieval(synth_dir: Path, out: Path) -> Path:
    """As the Hub's sets are written: PIL images saved as lossless WebP (the exporter's default format)."""
    from clip_benchmark.webdataset_builder import PIL_to_bytes, convert_retrieval_dataset
    from PIL import Image

    source = synth_dir / "shapes-retrieval"
    images = json.loads((source / "dataset_shapes.json").read_text())["images"]
    samples = [(Image.open(source / "images" / image["filename"]).convert("RGB"),
                [s["raw"] for s in image["sentences"]]) for image in images if image["split"] == "test"]
    convert_retrieval_dataset(samples, "test", str(out), transform=PIL_to_bytes("webp"), image_format="webp",
                              max_count=SHARD_SIZE, verbose=False)
    return out


def _exported(root: Path) -> int:
    """How many samples the exporter wrote (it prints the total; counted here from the tar members)."""
    return sum(1 for shard in (root / "test").glob("*.tar") for name in tarfile.open(shard).getnames()
               if name.endswith((".webp", ".png", ".jpg", ".jpeg")))


def _wds_task(tmp_path: Path, kind: str = "zeroshot_classification", layout: str = "clip_benchmark_wds") -> object:
    """shapes-zeroshot's classes and prompts, reading one wds layout."""
    path = tmp_path / "shapes-wds.yaml"
    path.write_text(f"name: shapes-wds\nkind: {kind}\ndescription: d\n"
                    f"data: {{folder: shapes-wds, layouts: [{{kind: {layout}, split: test}}]}}\n"
                    f"classes: {SHAPES.resource(SHAPES.classes)}\ntemplates: {SHAPES.resource(SHAPES.templates)}\n"
                    "get_data: exported by the test\n")
    return load_task(str(path))


@pytest.fixture(scope="module")
def adapter():
    return load_adapter("reclip-demo")


@pytest.fixture(scope="module")
def wds_classification(synth_dir, tmp_path_factory) -> Path:
    return _export_classification(synth_dir, tmp_path_factory.mktemp("wds") / "shapes-wds")


@pytest.fixture(scope="module")
def wds_retrieval(synth_dir, tmp_path_factory) -> Path:
    return _export_retrieval(synth_dir, tmp_path_factory.mktemp("wds") / "flickr30k")


def test_classification_equals_clip_benchmark_on_its_own_shards(clip_benchmark_zeroshot, wds_classification, adapter,
                                                                tmp_path):
    from clip_benchmark.datasets.builder import build_wds_dataset

    assert int((wds_classification / "test" / "nshards.txt").read_text()) > 1  # the shards are really several
    ours = evaluate(adapter, _wds_task(tmp_path), EvalOptions(data_dir=wds_classification, workers=0))
    theirs_data = build_wds_dataset("wds_shapes", adapter.transform, split="test", data_dir=str(wds_classification))
    theirs = clip_benchmark_zeroshot.evaluate(
        _AsModel(adapter), DataLoader(theirs_data, batch_size=64), adapter.tokenize, theirs_data.classes,
        theirs_data.templates, device="cpu", amp=False)
    assert ours["task"]["layout"] == "clip_benchmark_wds"
    assert ours["counts"]["images_evaluated"] == ours["counts"]["images_total"] == _exported(wds_classification)
    assert ours["metrics"]["top1"] > 0.1  # a trained model: not two chance levels compared
    assert ours["metrics"]["top1"] == pytest.approx(theirs["acc1"], abs=1e-6)
    assert ours["metrics"]["top5"] == pytest.approx(theirs["acc5"], abs=1e-6)
    assert ours["metrics"]["mean_per_class_recall"] == pytest.approx(theirs["mean_per_class_recall"], abs=1e-6)
    assert ours["task"]["wds_members_ignored"] == {}


def test_multilabel_map_equals_clip_benchmark_on_its_own_shards(clip_benchmark_zeroshot, synth_dir, adapter,
                                                                tmp_path):
    from clip_benchmark.datasets.builder import build_wds_dataset

    root = _export_multilabel(synth_dir, tmp_path / "shapes-wds")
    task = _wds_task(tmp_path, "multilabel", "clip_benchmark_wds_multilabel")
    ours = evaluate(adapter, task, EvalOptions(data_dir=root, workers=0))
    theirs_data = build_wds_dataset("wds_shapes", adapter.transform, split="test", data_dir=str(root))
    templates = [t.replace("{}", "{c}") for t in read_templates(SHAPES.resource(SHAPES.templates))]
    theirs = clip_benchmark_zeroshot.evaluate(
        _AsModel(adapter), DataLoader(theirs_data, batch_size=64), adapter.tokenize, theirs_data.classes, templates,
        device="cpu", amp=False)
    assert ours["task"]["layout"] == "clip_benchmark_wds_multilabel"
    assert ours["counts"]["images_evaluated"] == _exported(root)
    assert 0.1 < ours["metrics"]["mAP"] < 1  # a trained model, and the drawn second labels keep it from perfect
    assert ours["metrics"]["mAP"] == pytest.approx(theirs["mean_average_precision"], abs=1e-6)
    # A multilabel set is not read as a single-label one (nor the other way round).
    with pytest.raises(DataError, match=r"dataset_type.txt: a multilabel set; this task reads classification sets"):
        evaluate(adapter, _wds_task(tmp_path), EvalOptions(data_dir=root, workers=0))


def test_flickr30k_task_reads_the_wds_layout_and_equals_clip_benchmark(wds_retrieval, adapter):
    from clip_benchmark.datasets.builder import build_wds_dataset, image_captions_collate_fn
    from clip_benchmark.metrics import zeroshot_retrieval

    ours = evaluate(adapter, load_task("flickr30k"), EvalOptions(data_dir=wds_retrieval.parent, workers=0))
    theirs_data = build_wds_dataset("wds_flickr30k", adapter.transform, split="test", data_dir=str(wds_retrieval))
    theirs = zeroshot_retrieval.evaluate(
        _AsModel(adapter), DataLoader(theirs_data, batch_size=64, collate_fn=image_captions_collate_fn),
        adapter.tokenize, device="cpu", amp=False, recall_k_list=[1, 5, 10])
    assert ours["task"]["layout"] == "clip_benchmark_wds_retrieval"
    assert {Path(name).suffix for name in tarfile.open(wds_retrieval / "test" / "0.tar").getnames()} == {".webp", ".txt"}
    assert ours["counts"]["images_evaluated"] == _exported(wds_retrieval)
    assert ours["metrics"]["i2t_R@1"] > 0.3
    for k in (1, 5, 10):
        # CLIP_benchmark's text_retrieval is image -> text (our i2t), image_retrieval is text -> image (our t2i).
        assert ours["metrics"][f"i2t_R@{k}"] == pytest.approx(theirs[f"text_retrieval_recall@{k}"], abs=1e-6)
        assert ours["metrics"][f"t2i_R@{k}"] == pytest.approx(theirs[f"image_retrieval_recall@{k}"], abs=1e-6)


def _copy(source: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(source, tmp_path / source.name))


def _rewrite_shard(shard: Path, change) -> None:
    """Rewrite a shard member by member: `change(name, data)` returns the [(name, data)] to write in its place."""
    with tarfile.open(shard) as tar:
        members = [(info.name, tar.extractfile(info).read()) for info in tar if info.isfile()]
    with tarfile.open(shard, "w") as tar:
        for name, data in members:
            for new_name, new_data in change(name, data):
                info = tarfile.TarInfo(new_name)
                info.size = len(new_data)
                tar.addfile(info, io.BytesIO(new_data))


class _CreatesFile:
    """Unpickling this creates the file: what a .pyd member of a hostile shard could do instead."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_a_pyd_member_is_counted_and_never_unpickled(wds_classification, adapter, tmp_path):
    import webdataset as wds

    root = _copy(wds_classification, tmp_path)
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_CreatesFile(marker))
    _rewrite_shard(root / "test" / "0.tar", lambda name, data: [(name, data)] + (
        [("s0000000.pyd", payload)] if name == "s0000000.cls" else []))
    ours = evaluate(adapter, _wds_task(tmp_path), EvalOptions(data_dir=root, workers=0))
    assert not marker.exists()
    assert ours["task"]["wds_members_ignored"] == {"pyd": 1}
    assert ours["counts"]["images_evaluated"] == _exported(root)
    # The same shard through webdataset's default decoders (what CLIP_benchmark's loader uses) runs the payload.
    for _ in wds.WebDataset(str(root / "test" / "0.tar"), shardshuffle=False).decode():
        pass
    assert marker.exists()


def _read(root, task="shapes-zeroshot"):
    from reclip_eval.data.layouts import LayoutSpec, read_classification

    spec = load_task(task)
    return read_classification(LayoutSpec(kind="clip_benchmark_wds", split="test"), root,
                               read_class_list(spec.resource(spec.classes)))


def test_shards_not_matching_nshards_txt_are_refused(wds_classification, tmp_path):
    root = _copy(wds_classification, tmp_path)
    count = int((root / "test" / "nshards.txt").read_text())
    (root / "test" / "nshards.txt").write_text(f"{count + 1}\n")
    with pytest.raises(DataError, match=rf"{root / 'test' / 'nshards.txt'}: says {count + 1} shards.*missing "
                                        rf"{count}\.tar"):
        _read(root)
    (root / "test" / "nshards.txt").write_text(f"{count - 1}\n")
    with pytest.raises(DataError, match=rf"nshards.txt: says {count - 1} shards.*not counted {count - 1}\.tar"):
        _read(root)


@pytest.mark.parametrize("damage", [lambda data: b"not a tar file" * 100, lambda data: data[:len(data) // 2]],
                         ids=["garbage", "truncated"])
def test_an_unreadable_tar_is_named(wds_classification, tmp_path, damage):
    root = _copy(wds_classification, tmp_path)
    shard = root / "test" / "1.tar"
    shard.write_bytes(damage(shard.read_bytes()))
    with pytest.raises(DataError, match=rf"^{root / 'test' / '1.tar'}: unreadable tar"):
        _read(root)


def test_a_class_index_outside_classnames_txt_is_named(wds_classification, tmp_path):
    root = _copy(wds_classification, tmp_path)
    _rewrite_shard(root / "test" / "0.tar",
                   lambda name, data: [(name, b"36" if name == "s0000001.cls" else data)])
    with pytest.raises(DataError, match=rf"^{root / 'test' / '0.tar'}: sample s0000001.cls: class index 36 is "
                                        r"outside classnames.txt's 36 classes"):
        _read(root)


def test_imagenet_tasks_find_the_layout_and_refuse_another_class_list(wds_classification):
    for task in ("imagenet", "imagenet-v2", "imagenet-a", "imagenet-r", "imagenet-sketch"):
        folder, layout = locate_task_data(load_task(task), wds_classification)
        assert (folder, layout.kind) == (wds_classification, "clip_benchmark_wds")
    with pytest.raises(DataError, match=r"classnames.txt: 36 classes; the task has 1000"):
        _read(wds_classification, "imagenet")


def test_hf_datasets_id_reads_the_hugging_face_cache_offline(wds_retrieval, adapter, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from reclip_eval.data.layouts import LayoutSpec, read_retrieval

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    layout = LayoutSpec(kind="clip_benchmark_wds_retrieval", split="test")
    with pytest.raises(DataError, match=r"^hf-datasets:clip-benchmark/wds_flickr30k: not in the Hugging Face cache"):
        read_retrieval(layout, "clip-benchmark/wds_flickr30k")
    # The cache's own layout: refs/main names the snapshot folder.
    repo = tmp_path / "hub" / "datasets--clip-benchmark--wds_flickr30k"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    _copy(wds_retrieval, repo / "snapshots").rename(repo / "snapshots" / revision)
    task = load_task("flickr30k")
    from_hub = evaluate(adapter, task, EvalOptions(data_dir="hf-datasets:clip-benchmark/wds_flickr30k", workers=0))
    local = evaluate(adapter, task, EvalOptions(data_dir=wds_retrieval, workers=0))
    assert from_hub["task"]["layout"] == "clip_benchmark_wds_retrieval"
    assert from_hub["metrics"] == local["metrics"]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_mean_average_precision_equals_clip_benchmarks(n_images, n_classes, seed):
    import torch
    from clip_benchmark.metrics.zeroshot_classification import average_precision_per_class

    from reclip_eval.eval.metrics import mean_average_precision

    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(n_images, n_classes, generator=generator)  # distinct: no ties for the two sorts to break
    targets = (torch.rand(n_images, n_classes, generator=generator) < 0.4).long()  # classes without positives too
    expected = average_precision_per_class(scores, targets).mean().item()
    assert mean_average_precision(scores, targets)["mAP"] == pytest.approx(expected, abs=1e-6)


def test_shards_without_nshards_txt_are_pointed_out(wds_retrieval, tmp_path):
    root = _copy(wds_retrieval, tmp_path / "data")
    (root / "test" / "nshards.txt").unlink()
    with pytest.raises(DataError, match=r"found: .*test holds .tar files but no nshards.txt"):
        locate_task_data(load_task("flickr30k"), root.parent)
