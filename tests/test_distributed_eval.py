"""torchrun evaluation (2 CPU processes, gloo) shards the data and gathers it: the metrics equal one process's."""

import json
import os
import subprocess
import sys

import pytest

from reclip_eval.distributed import shard_bounds

from .conftest import REPO


@pytest.mark.parametrize("n,world", [(0, 2), (1, 2), (7, 2), (10, 3), (1000, 8)])
def test_shards_are_contiguous_and_cover_everything(n, world):
    blocks = [shard_bounds(n, r, world) for r in range(world)]
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:], strict=False))
    assert max(b - a for a, b in blocks) - min(b - a for a, b in blocks) <= 1


def test_two_process_eval_equals_one_process(tiny_checkpoint, synth_dir, tmp_path):
    # A corrupt image too: skipped lists must also come back whole and in order.
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    bad = sorted((data / "shapes-zeroshot" / "val" / "green_star").glob("*.jpg"))[1]
    bad.write_bytes(b"not a jpeg")
    env = {**os.environ, "RECLIP_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    args = ["--model", str(tiny_checkpoint), "--task", "shapes-zeroshot,shapes-retrieval", "--data-dir", str(data),
            "--workers", "0", "--batch-size", "16", "--device", "cpu"]
    single = subprocess.run([sys.executable, "-m", "reclip_eval", *args, "--output", str(tmp_path / "one")],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    multi = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
         "reclip_eval", *args, "--output", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert multi.returncode == 0, multi.stderr[-3000:]
    for task in ("shapes-zeroshot", "shapes-retrieval"):
        one = json.loads(next((tmp_path / "one").glob(f"*__{task}.json")).read_text())
        two = json.loads(next((tmp_path / "two").glob(f"*__{task}.json")).read_text())
        assert two["metrics"] == one["metrics"]
        assert two["counts"] == one["counts"] and two["skipped"] == one["skipped"]
    assert one["counts"]["images_skipped"] == 0  # retrieval has no corrupt file
    zeroshot = json.loads(next((tmp_path / "two").glob("*__shapes-zeroshot.json")).read_text())
    assert zeroshot["counts"]["images_skipped"] == 1 and zeroshot["skipped"][0]["path"] == str(bad)
