"""The data readers never run code from a data file, never drop a file from a denominator without saying so, and
refuse annotations whose numbers would be wrong (issue #12, items 2, 10 and 11: the data parts)."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from reclip_eval.cli.main import main
from reclip_eval.data.retrieval_files import read_coco_captions, read_flickr_txt
from reclip_eval.data.shards import train_batches
from reclip_eval.data.transforms import image_transform
from reclip_eval.errors import DataError
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task
from reclip_eval.models.config import PreprocessConfig
from reclip_eval.models.tokenizer import ClipTokenizer
from reclip_eval.zoo.resolve import load_adapter

from .conftest import PowerCut, die_after_resume_points


class _WritesMarker:
    """Unpickling this creates the file at `path`: the proof that a decoder ran code from a shard."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _jpeg_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def _shard_with_pickles(source: Path, out: Path, marker: Path) -> int:
    """A copy of a real training shard with a `.pyd` member beside every pair; returns the number of pairs."""
    payload = pickle.dumps(_WritesMarker(marker))
    out.parent.mkdir(parents=True, exist_ok=True)
    pairs = 0
    with tarfile.open(source) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
            if member.name.endswith(".txt"):
                _add(dst, member.name[:-len(".txt")] + ".pyd", payload)
                pairs += 1
    return pairs


def test_training_never_unpickles_a_shard_member_and_counts_it(synth_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "unpickled-marker"
    shard = sorted((synth_dir / "shapes-train").glob("*.tar"))[0]
    _shard_with_pickles(shard, tmp_path / "shards" / "evil.tar", marker)
    code = main(["train", "tiny-shapes", "--out", str(tmp_path / "run"), "--workers", "1",
                 f"data.shards={tmp_path / 'shards'}", "data.synth=null", "stages.0.steps=2",
                 "stages.0.warmup_steps=0", "stages.1.steps=1", "stages.1.warmup_steps=0"])
    assert code == 0
    assert not marker.exists(), "a .pyd member of a training shard was unpickled"
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    for stage in record["stages"]:
        # Every pair drawn carried one .pyd member: each was counted and none decoded.
        assert stage["data_skipped"]["members_ignored"]["pyd"] == stage["samples_seen"]
        assert stage["data_skipped"]["samples_dropped"] == {}


def test_train_batches_count_dropped_samples_by_reason(tmp_path):
    good = 6
    shard = tmp_path / "mixed.tar"
    with tarfile.open(shard, "w") as tar:
        for k in range(good):
            _add(tar, f"{k:04d}.jpg", _jpeg_bytes((40 * k, 0, 0)))
            _add(tar, f"{k:04d}.txt", f"a red square number {k}".encode())
        _add(tar, "0100.jpg", _jpeg_bytes((0, 0, 0)))  # no caption
        _add(tar, "0101.txt", b"a caption without its image")
        _add(tar, "0102.jpg", b"not a jpeg at all")
        _add(tar, "0102.txt", b"a caption of a broken image")
        _add(tar, "0103.jpg", _jpeg_bytes((0, 0, 0)))
        _add(tar, "0103.txt", b"  \n")
        _add(tar, "0104.jpg", _jpeg_bytes((0, 0, 0)))
        _add(tar, "0104.txt", b"\xff\xfe not utf-8")
        _add(tar, "0105.jpg", _jpeg_bytes((0, 0, 0)))
        _add(tar, "0105.txt", b"a scene with an array beside it")
        _add(tar, "0105.npy", b"\x93NUMPY never read")
    batches = train_batches([str(shard)], image_transform(16, PreprocessConfig()), ClipTokenizer(16), batch_size=2,
                            seed=0, shuffle_buffer=1, workers=1)
    for _ in range(2 * (good + 1)):  # two passes over the shard's usable pairs: every sample has been decoded
        pixels, tokens = next(batches)
        assert pixels.shape[0] == tokens.shape[0] == 2
    counts = batches.counts()
    assert set(counts["samples_dropped"]) == {"no caption", "no image", "unreadable image", "empty caption",
                                              "caption not UTF-8"}
    assert min(counts["samples_dropped"].values()) >= 1
    assert set(counts["members_ignored"]) == {"npy"}


def _class_folder_with_other_formats(synth_dir: Path, data: Path) -> tuple[Path, Path]:
    """A copy of the zero-shot set where one class also holds a TIFF, a GIF and a text file, and another class
    holds only a text file; returns (the mixed class folder, the text-only one)."""
    shutil.copytree(synth_dir / "shapes-zeroshot", data / "shapes-zeroshot")
    folders = sorted(p for p in (data / "shapes-zeroshot" / "val").iterdir() if p.is_dir())
    mixed, text_only = folders[0], folders[1]
    image = Image.open(sorted(mixed.glob("*.jpg"))[0])
    image.save(mixed / "extra.tif")
    image.save(mixed / "extra.gif")
    (mixed / "notes.txt").write_text("not an image")
    for jpeg in text_only.glob("*.jpg"):
        jpeg.unlink()
    (text_only / "readme.txt").write_text("the images are elsewhere")
    return mixed, text_only


def test_tif_gif_are_read_and_other_files_are_listed(tiny_checkpoint, synth_dir, tmp_path):
    data = tmp_path / "data"
    mixed, text_only = _class_folder_with_other_formats(synth_dir, data)
    files = [p for p in (data / "shapes-zeroshot" / "val").rglob("*") if p.is_file()]
    not_images = sorted(str(p) for p in files if p.suffix == ".txt")
    results = evaluate(load_adapter(str(tiny_checkpoint)), load_task("shapes-zeroshot"),
                       EvalOptions(data_dir=data, batch_size=16, workers=0))
    counts = results["counts"]
    assert counts["images_total"] == len(files)
    assert counts["images_evaluated"] == len(files) - len(not_images)  # the .tif and .gif are evaluated
    assert counts["images_skipped"] == len(not_images)
    assert sorted(s["path"] for s in results["skipped"]) == not_images
    assert all("not an image" in s["reason"] for s in results["skipped"])
    assert counts["classes_without_images"] == 1
    assert results["task"]["classes_without_images"] == [text_only.name]


def test_flickr_txt_refuses_an_empty_caption(tmp_path):
    (tmp_path / "images").mkdir()
    annotations = tmp_path / "flickr30k_test_karpathy.txt"
    annotations.write_text("image,caption\n1.jpg,a dog runs\n2.jpg,a cat sits\n2.jpg,\n")
    with pytest.raises(DataError, match=r"line 3 \(image 2.jpg\): caption 1 is ''"):
        read_flickr_txt(annotations, tmp_path / "images")


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d["annotations"][1].update(caption=None), r"image id 1 \(image a.jpg\): caption 1 is None"),
    (lambda d: d["annotations"][2].update(caption=7), r"image id 2 \(image b.jpg\): caption 0 is 7"),
    (lambda d: d["images"].append({"id": 1, "file_name": "c.jpg"}), r"images\[2\] lists image id 1 again \(first at images\[0\]; "
                                                              r"file_name 'a.jpg' there, 'c.jpg' here"),
    (lambda d: d["images"].append({"id": 3, "file_name": "a.jpg"}), r"lists image a.jpg again"),
    (lambda d: d["annotations"].append({"image_id": 9, "caption": "x"}), r"annotations\[3\].*image_id 9"),
], ids=["null-caption", "numeric-caption", "repeated-id", "repeated-file", "unknown-image-id"])
def test_coco_captions_refuses_what_would_miscount(tmp_path, edit, expected):
    data = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
            "annotations": [{"image_id": 1, "caption": "a dog"}, {"image_id": 1, "caption": "a brown dog"},
                            {"image_id": 2, "caption": "a cat"}]}
    edit(data)
    annotations = tmp_path / "coco_test_karpathy.json"
    annotations.write_text(json.dumps(data))
    with pytest.raises(DataError, match=expected):
        read_coco_captions(annotations, tmp_path)


@pytest.mark.parametrize("workers", [0, 2])
def test_counts_continue_exactly_on_resume(synth_dir, workers):
    """The synthetic shards carry a .json member per pair: counted (never decoded) per batch handed out, so a
    resumed stream that starts from the record of batch k counts what the uninterrupted one does."""
    from reclip_eval.data.shards import list_shards

    shards = list_shards("shapes-train", synth_dir)
    kwargs = dict(transform=image_transform(16, PreprocessConfig()), tokenize=ClipTokenizer(16), batch_size=8,
                  seed=3, shuffle_buffer=50, workers=workers)
    full = train_batches(shards, **kwargs)
    after = []  # counts after each batch of the uninterrupted stream
    for _ in range(6):
        next(full)
        after.append(full.counts())
    assert after[-1]["members_ignored"] == {"json": len(after) * kwargs["batch_size"]}
    for k in (1, 3):
        resumed = train_batches(shards, skip_batches=k, counts_so_far=after[k - 1], **kwargs)
        for expected in after[k:k + 2]:
            next(resumed)
            assert resumed.counts() == expected, k


def test_devkit_labels_pair_with_the_images_not_other_files(tmp_path):
    """The devkit's ground truth has one line per image: a stray file in the folder must not shift the pairing."""
    import numpy as np
    from scipy.io import savemat

    from reclip_eval.data.imagefolder import ClassList
    from reclip_eval.data.layouts import LayoutSpec, read_classification

    wnids = ("n01440764", "n01443537")
    split = tmp_path / "val"
    split.mkdir()
    for number, _ in enumerate(wnids, start=1):
        Image.new("RGB", (8, 8)).save(split / f"ILSVRC2012_val_{number:08d}.JPEG")
    (split / "README.txt").write_text("downloaded from image-net.org")
    data = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    synsets = np.array([(i, w, 0) for i, w in enumerate(wnids, start=1)],
                       dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    savemat(data / "meta.mat", {"synsets": synsets})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in range(1, len(wnids) + 1)))
    classes = ClassList(wnids, ("tench", "goldfish"))
    read = read_classification(LayoutSpec("flat_devkit"), tmp_path, classes)
    assert [(p.name, label) for p, label in read.items] == [
        (f"ILSVRC2012_val_{number:08d}.JPEG", number - 1) for number in range(1, len(wnids) + 1)]


def _shard_with_drops(path: Path, pairs: int) -> Path:
    """Captioned pairs with an uncaptioned image after every third one: a stream that drops samples."""
    with tarfile.open(path, "w") as tar:
        for k in range(pairs):
            _add(tar, f"{k:04d}.jpg", _jpeg_bytes((7 * k % 256, 3 * k % 256, 11 * k % 256)))
            _add(tar, f"{k:04d}.txt", f"scene number {k}".encode())
            if k % 3 == 2:
                _add(tar, f"{k:04d}x.jpg", _jpeg_bytes((0, 0, 0)))
    return path


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_restarts_the_stream_exactly_when_samples_were_dropped(tmp_path, workers):
    """A dropped sample (here: images without captions) moves a worker's raw position past batches x batch size; a
    resumed stream that skipped batches x batch size would then hand out other batches than the uninterrupted one."""
    shards = [str(_shard_with_drops(tmp_path / f"{n}.tar", 12)) for n in range(2)]
    kwargs = dict(transform=image_transform(16, PreprocessConfig()), tokenize=ClipTokenizer(16), batch_size=4,
                  seed=5, shuffle_buffer=10, workers=workers)
    full = train_batches(shards, **kwargs)
    tokens, positions, counts = [], [], []
    for _ in range(9):
        tokens.append(next(full)[1])
        positions.append(full.stream_positions())
        counts.append(full.counts())
    assert counts[-1]["samples_dropped"]["no caption"] > 0  # the setup does drop samples
    for k in (3, 4, 5):
        resumed = train_batches(shards, skip_batches=k, stream_positions=positions[k - 1],
                                counts_so_far=counts[k - 1], **kwargs)
        for step in range(k, 9):
            assert next(resumed)[1].equal(tokens[step]), (k, step)
        assert resumed.counts() == counts[-1]


@pytest.mark.parametrize("workers", [0, 2])
def test_trainer_resumes_onto_the_curve_when_samples_were_dropped(tmp_path, workers, monkeypatch):
    """End to end: a run that dies after its second resume point, on shards that drop samples, resumes onto the
    uninterrupted loss curve (the resume point records where each worker's stream stood)."""
    from reclip_eval.train import loop
    from reclip_eval.train.recipe import load_recipe

    shard_dir = tmp_path / "shards"
    shard_dir.mkdir()
    for n in range(2):
        _shard_with_drops(shard_dir / f"{n:04d}.tar", 30)
    overrides = [f"data.shards={shard_dir}", "data.synth=null", "stages.0.steps=6", "stages.0.warmup_steps=0",
                 "stages.0.batch_size=8", "stages.1.steps=1", "stages.1.warmup_steps=0", "stages.1.batch_size=8",
                 "checkpoint_every=2", "keep_checkpoints=5"]
    _, whole = loop.train(load_recipe("tiny-shapes", overrides), tmp_path / "whole", device="cpu", workers=workers)
    assert sum(whole[0].data_skipped["samples_dropped"].values()) > 0

    die_after_resume_points(monkeypatch, loop, 2)
    with pytest.raises(PowerCut):
        loop.train(load_recipe("tiny-shapes", overrides), tmp_path / "cut", device="cpu", workers=workers)
    monkeypatch.undo()
    _, resumed = loop.train(load_recipe("tiny-shapes", overrides), tmp_path / "cut", device="cpu", workers=workers,
                            resume=True)
    for a, b in zip(whole, resumed, strict=True):
        assert b.losses == pytest.approx(a.losses, abs=2e-4), a.name
        assert b.data_skipped == a.data_skipped
