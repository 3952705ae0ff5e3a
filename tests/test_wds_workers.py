"""CLIP_benchmark webdataset sets with DataLoader workers: identical metrics with 0, 1 and 2 workers (the images are
decoded in the workers, the results keep the set's order), every worker busy however few shards a set has (where
CLIP_benchmark's loader fails), and the shard index (data/tar_index.py) equal to tarfile's on what tar writers make,
refusing a shard cut anywhere."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reclip_eval.data.tar_index import regular_members
from reclip_eval.errors import DataError
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task
from tests import test_clip_benchmark_wds as wds_tests

adapter = wds_tests.adapter
wds_classification = wds_tests.wds_classification
wds_retrieval = wds_tests.wds_retrieval


def _same_run(results: list[dict]) -> None:
    first = results[0]
    for other in results[1:]:
        assert other["metrics"] == first["metrics"]  # identical, not approximately equal
        assert other["counts"] == first["counts"] and other["skipped"] == first["skipped"]
        assert other["task"]["data_fingerprint"] == first["task"]["data_fingerprint"]


def test_classification_metrics_are_identical_with_0_1_2_workers(wds_classification, adapter, tmp_path):
    task = wds_tests._wds_task(tmp_path)
    runs = [evaluate(adapter, task, EvalOptions(data_dir=wds_classification, workers=w, batch_size=16))
            for w in (0, 1, 2)]
    assert runs[0]["task"]["wds_shards"] > 2 and runs[0]["counts"]["images_evaluated"] > 32  # batches span shards
    _same_run(runs)


def test_retrieval_metrics_are_identical_with_0_1_2_workers(wds_retrieval, adapter):
    runs = [evaluate(adapter, load_task("flickr30k"), EvalOptions(data_dir=wds_retrieval.parent, workers=w,
                                                                  batch_size=8)) for w in (0, 1, 2)]
    _same_run(runs)


def test_one_shard_and_two_workers_reads_every_image(synth_dir, adapter, tmp_path, monkeypatch):
    """Both workers decode (the items are split, not the shards); CLIP_benchmark's webdataset loader fails here."""
    from clip_benchmark.datasets.builder import build_wds_dataset
    from torch.utils.data import DataLoader

    root = tmp_path / "one-shard"
    monkeypatch.setattr(wds_tests, "SHARD_SIZE", 10_000)
    wds_tests._export_classification(synth_dir, root)
    assert (root / "test" / "nshards.txt").read_text().strip() == "1"
    task = wds_tests._wds_task(tmp_path)
    runs = [evaluate(adapter, task, EvalOptions(data_dir=root, workers=w, batch_size=16)) for w in (0, 2)]
    _same_run(runs)
    assert runs[1]["counts"]["images_evaluated"] == wds_tests._exported(root)
    theirs = build_wds_dataset("wds_shapes", adapter.transform, split="test", data_dir=str(root))
    with pytest.raises(ValueError, match="fewer shards than workers"):
        list(DataLoader(theirs, batch_size=16, num_workers=2))


# --- the shard index --------------------------------------------------------------------------------------------

NAMES = st.text(st.sampled_from("abcdé_-./0123456789"), min_size=1, max_size=140).filter(
    lambda n: not n.startswith("/") and "//" not in n and not n.endswith("/") and ".." not in n.split("/"))
MEMBERS = st.lists(st.tuples(NAMES, st.integers(0, 1500), st.sampled_from(["file", "file", "file", "dir", "link"])),
                   max_size=8)


def _tar(members, tar_format: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for number, (name, size, kind) in enumerate(members):
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000.5 + number  # a float mtime: webdataset's writer, and a pax header with it
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, "x" * (size % 150 + 1)
                tar.addfile(info)
            else:
                info.size = size
                tar.addfile(info, io.BytesIO(bytes([number % 256]) * size))
    return buffer.getvalue()


def _index(path: Path) -> list[tuple[str, int, int]]:
    with open(path, "rb") as stream:
        return list(regular_members(stream, str(path)))


@settings(max_examples=60, deadline=None)
@given(MEMBERS, st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
def test_index_equals_tarfile(tmp_path_factory, members, tar_format):
    if tar_format == tarfile.USTAR_FORMAT:  # ustar holds no long names or float mtimes: tarfile refuses those
        members = [(name[-99:].lstrip("/"), size, kind) for name, size, kind in members
                   if len(name.encode()) < 100 and name.isascii()]
    path = tmp_path_factory.mktemp("tar") / "x.tar"
    try:
        path.write_bytes(_tar(members, tar_format))
    except ValueError:  # a name this format cannot hold
        return
    with tarfile.open(path) as tar:
        expected = [(info.name, info.offset_data, info.size) for info in tar if info.isfile()]
    assert _index(path) == expected


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_a_shard_cut_anywhere_is_refused(tmp_path_factory, data):
    members = [(f"s{i:07d}.{ext}", size, "file") for i, size in enumerate([700, 3, 1100]) for ext in ("jpg", "cls")]
    whole = _tar(members, tarfile.PAX_FORMAT)
    end = len(whole.rstrip(b"\0"))  # where the last member's data stops (it ends on a non-zero byte)
    cut = data.draw(st.integers(0, end - 1), label="cut")
    path = tmp_path_factory.mktemp("cut") / "0.tar"
    path.write_bytes(whole[:cut] if cut else b"")
    with pytest.raises(DataError, match=rf"^{path}: unreadable tar \("):
        _index(path)


def test_the_webdataset_writer_is_indexed_as_tarfile_reads_it(tmp_path):
    import webdataset as wds

    path = tmp_path / "0.tar"
    with wds.TarWriter(str(path)) as sink:
        for i in range(5):
            sink.write({"__key__": f"dir/s{i:07d}", "jpg": b"\xff\xd8" + bytes(i * 300), "cls": str(i).encode(),
                        "json": {"i": i}})
    with tarfile.open(path) as tar:
        expected = [(info.name, info.offset_data, info.size) for info in tar if info.isfile()]
    assert len(expected) == 15 and _index(path) == expected
