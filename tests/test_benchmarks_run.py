"""The benchmark scripts stay runnable (tiny CPU smoke runs). Their speed is measured on a GPU, never here."""

import json
import subprocess
import sys

import pytest

from .conftest import REPO


def test_eval_throughput_smoke(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/eval_throughput.py", "--preset", "tiny", "--image-size", "32", "--images", "72",
         "--batch-size", "16", "--workers", "0", "--device", "cpu", "--precision", "fp32", "--repeats", "1",
         "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=600,
        env={"RECLIP_CACHE": str(tmp_path / "c"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["top1_agree"] is True  # same model, data and prompts: same accuracy on both sides
    assert set(report["images_per_second"]) == {"reclip-eval", "clip_benchmark"}


def test_eval_throughput_realistic_quick(tmp_path):
    """The whole-process comparison (issue 35) at tiny size: every case, opt-in and the classifier build run and
    report; the demo's top-1 is the same on both sides (same weights, images and prompts)."""
    out = tmp_path / "realistic.json"
    run = subprocess.run([sys.executable, "benchmarks/eval_throughput.py", "--realistic", "--quick", "--out", str(out)],
                         capture_output=True, text=True, cwd=REPO, timeout=1800,
                         env={"RECLIP_CACHE": str(tmp_path / "c"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    demo = report["exact"]["demo_64px"]
    assert demo["top1"]["ours"][0] == pytest.approx(demo["top1"]["clip_benchmark"][0], abs=1e-6)
    assert set(report["exact"]) == {"demo_64px", "vit_b16_64px"} and set(report["targets"]) == {
        "demo_64px", "vit_b16_64px", "vit_b16_224px", "classifier_build"}
    assert "demo_64px_decode_draft" in report["opt_in"]
    assert report["classifier_build"]["max_abs_difference"] < 1e-5
    assert report["load_average"]["at_each_run_1min"]


def test_loader_throughput_smoke(tmp_path):
    out = tmp_path / "loader.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/loader_throughput.py", "--source-size", "96", "--short-side", "40",
         "--image-size", "32", "--samples", "100", "--batch-size", "8", "--batches", "2", "--workers", "0",
         "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["bytes_per_sample"]["preresized"] < report["bytes_per_sample"]["original"]


def test_train_throughput_smoke(tmp_path, synth_dir):
    out = tmp_path / "train.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/train_throughput.py", "--arch", "tiny", "--sizes", "32,16", "--batch-size", "4",
         "--steps", "1", "--warmup", "1", "--device", "cpu", "--dtype", "fp32", "--out", str(out),
         "--shards", str(synth_dir / "shapes-train"), "--workers", "0"],
        capture_output=True, text=True, cwd=REPO, timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"32", "16"}
    assert all(row["reclip-eval_shards"]["samples_per_second"] > 0 and row["shards_over_random"] > 0
               for row in results.values())
    # Both sides run the same architecture: their forward FLOPs agree within the class-token difference.
    for row in results.values():
        ours, theirs = row["reclip-eval"]["forward_gflops_per_sample"], row["open_clip"]["forward_gflops_per_sample"]
        assert abs(ours - theirs) / theirs < 0.1


def test_detect_throughput_smoke(tmp_path):
    out = tmp_path / "detect.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/detect_throughput.py", "--archs", "tiny", "--recipe", "detect-shapes",
         "--image-size", "64", "--batch-size", "2", "--steps", "1", "--warmup", "1", "--categories", "10",
         "--device", "cpu", "--precision", "fp32", "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())["results"]["tiny"]
    assert result["train_images_per_second"] > 0 and result["inference_images_per_second"] > 0


def test_load_time_smoke(tmp_path):
    out = tmp_path / "load.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/load_time.py", "--preset", "tiny", "--runs", "1", "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["seconds"]) == {"random", "meta"} and report["preset"] == "tiny"
    assert report["speedup_meta_over_random"] > 0 and report["median_seconds"]["read_weights_only"] > 0


def test_world_calibration_smoke(tmp_path):
    out = tmp_path / "calibration.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/world_calibration.py", "--sizes", "16,32", "--full-size", "32",
         "--training-full-size", "32", "--smallest-training-size", "16", "--train-images", "48",
         "--test-images", "24", "--steps", "2", "--batch-size", "16", "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"16", "32"} and report["settings"]["steps"] == 2
    names = {"shape", "colour", "pattern", "texture", "shape_small", "shape_medium", "shape_large"}
    assert set(report["chance"]) == names and report["chance"]["texture"] == 1 / 3
    for row in report["results"].values():
        assert set(row["accuracy"]) == names
        assert all(v is None or 0 <= v <= 1 for v in row["accuracy"].values())  # None: no test object that size
        assert row["seconds_per_step"] > 0
    # The fine attribute is judged at full size and at each size up to half of it; the coarse ones at the smallest.
    assert [(t["attribute"], t["size"]) for t in report["targets"]] == [
        ("texture", 32), ("texture", 16), ("colour", 16), ("shape_medium", 16), ("shape_large", 16)]
    assert all(t["met"] in (True, False, None) for t in report["targets"])


def test_jax_step_smoke(tmp_path):
    """The JAX-vs-torch step benchmark runs, and its sanity check holds: both backends' first-step loss is the
    same function of the same weights and batch."""
    out = tmp_path / "jax_step.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/jax_step.py", "--preset", "tiny", "--sizes", "32", "--batch-size", "8",
         "--steps", "2", "--warmup", "2", "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["first_loss_abs_diff"] < 1e-5
    assert row["torch"]["samples_per_s"] > 0 and row["jax"]["samples_per_s"] > 0


def test_backend_divergence_finetune_and_curves(tmp_path, synth_dir):
    """The divergence diagnostic's finetune reads the data stream it says (the torch finetune from a run's own
    low-res checkpoint repeats that run's finetune), the jax trainer's finetune from it follows the torch one, and
    `curves` finds no step where they part."""
    from reclip_eval.train.loop import train
    from reclip_eval.train.recipe import load_recipe

    short = ["stages.0.steps=8", "stages.0.warmup_steps=2", "stages.1.steps=4", "stages.1.warmup_steps=1",
             "save_dtype=float32", "seed=3"]
    train(load_recipe("tiny-shapes", short), tmp_path / "run", data_dir=synth_dir, device="cpu", workers=0)
    for backend in ("torch", "jax"):
        run = subprocess.run(
            [sys.executable, "benchmarks/backend_divergence.py", "finetune", str(tmp_path / "run/stages/lowres"),
             "--recipe", "tiny-shapes", *(a for o in short for a in ("--set", o)), "--seed", "3",
             "--backend", backend, "--data-dir", str(synth_dir), "--workers", "0", "--out", str(tmp_path / backend)],
            capture_output=True, text=True, cwd=REPO, timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert run.returncode == 0, run.stderr[-3000:]

    def losses(folder):
        return json.loads((tmp_path / folder / "training.json").read_text())["stages"]

    run_hires = losses("run")[1]["losses"]
    assert losses("torch")[0]["losses"] == run_hires  # same weights (saved in float32), same stream: same steps
    assert losses("jax")[0]["losses"] == pytest.approx(run_hires, abs=2e-4)
    out = tmp_path / "curves.json"
    run = subprocess.run([sys.executable, "benchmarks/backend_divergence.py", "curves", str(tmp_path / "torch"),
                          str(tmp_path / "jax"), "--stage", "hires", "--out", str(out)],
                         capture_output=True, text=True, cwd=REPO, timeout=600,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    (pair,) = json.loads(out.read_text())["pairs"]
    assert pair["common_steps"] == 4 and pair["first_step_apart"] is None


def test_wds_reader_smoke(tmp_path):
    out = tmp_path / "wds.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/wds_reader.py", "--images", "24", "--photo-size", "80x60", "--shard-size", "10",
         "--image-sizes", "32", "--batch-size", "8", "--workers", "0", "--repeats", "1", "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["shards"] == 3 and report["results"]["32"]["same_images_and_pixels"] is True
    assert report["results"]["32"]["ours_over_theirs_best"] > 0
