"""Nothing lost, nothing silently wrong in evaluation outputs: the class-embedding cache is keyed on everything that
changes a class embedding, and a results file is never replaced by a measurement of other weights or data."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from reclip_eval.cli.main import main
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task
from reclip_eval.zoo.resolve import load_adapter

from .conftest import REPO, run_cli

DEMO = REPO / "zoo" / "reclip-demo"


def _options(data_dir: Path) -> EvalOptions:
    return EvalOptions(data_dir=data_dir, batch_size=64, workers=0)


def _with_text_pool(tmp_path: Path, pool: str) -> Path:
    """The bundled demo checkpoint, byte-identical weights, with another text pooling in its config.json."""
    folder = tmp_path / f"demo-text-{pool}"
    shutil.copytree(DEMO, folder)
    config = json.loads((folder / "config.json").read_text())
    config["text"]["pool"] = pool
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_class_embedding_cache_tells_text_configs_apart(synth_dir, tmp_path, monkeypatch):
    """Issue #12 item 4: after a same-weights checkpoint with `text.pool: mean` was evaluated, reclip-demo must
    score what it scores with an empty cache (it scored the mean-pool model's class embeddings instead)."""
    task = load_task("shapes-zeroshot")
    monkeypatch.setenv("RECLIP_CACHE", str(tmp_path / "fresh-cache"))
    expected = evaluate(load_adapter("reclip-demo"), task, _options(synth_dir))["metrics"]

    monkeypatch.setenv("RECLIP_CACHE", str(tmp_path / "shared-cache"))
    mean_pool = load_adapter(str(_with_text_pool(tmp_path, "mean")))
    assert mean_pool.describe()["weights"]["sha256"] == load_adapter("reclip-demo").describe()["weights"]["sha256"]
    other = evaluate(mean_pool, task, _options(synth_dir))["metrics"]
    assert other != expected  # the mean-pool text tower really embeds the classes differently
    assert evaluate(load_adapter("reclip-demo"), task, _options(synth_dir))["metrics"] == expected


def _detector_text_embeddings(pool: str):
    from reclip_eval.detect.vocabulary import Category, text_embeddings
    from reclip_eval.models import CLIP, build_config

    config = build_config("tiny")
    config = dataclasses.replace(config, text=dataclasses.replace(config.text, pool=pool))
    torch.manual_seed(5)
    clip = CLIP(config).eval()  # the same seed: the same weights whatever the pooling
    categories = [Category(1, "red_circle", ("red disc",), "f"), Category(2, "blue_square", (), "r")]
    return text_embeddings(clip, categories, ["a photo of a {}."], clip_sha256="same-weights")


def test_detector_vocabulary_cache_tells_text_configs_apart():
    eot = _detector_text_embeddings("eot")
    mean = _detector_text_embeddings("mean")
    assert not torch.allclose(eot, mean)
    assert torch.equal(_detector_text_embeddings("eot"), eot)  # and a hit still returns the cached embeddings


# --- results files: kept, refused, replaced -------------------------------------------------------------------


def _eval(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    return code, capsys.readouterr().err


def _tiny_run(checkpoint: Path, data: Path | str, out: Path) -> list[str]:
    return ["--model", str(checkpoint), "--task", "shapes-zeroshot", "--data-dir", str(data), "--output", str(out),
            "--workers", "0", "--batch-size", "64"]


@pytest.fixture()
def measured(tiny_checkpoint, synth_dir, tmp_path, capsys) -> tuple[list[str], Path]:
    """A tiny checkpoint of our own, measured once on the small world: (its command line, its results file)."""
    checkpoint = tmp_path / "tiny"
    shutil.copytree(tiny_checkpoint, checkpoint)
    argv = _tiny_run(checkpoint, synth_dir, tmp_path / "out")
    code, err = _eval(capsys, *argv)
    assert code == 0, err
    (path,) = (tmp_path / "out").glob("*.json")
    return argv, path


def test_remeasuring_into_the_committed_results_keeps_them(tmp_path, monkeypatch):
    """Issue #12 item 0: README command 1 written into the committed results (`--output leaderboards/results`, as
    they are regenerated; by default it writes to ./results/) measures exactly what the committed file records, so
    the file is left byte for byte."""
    committed = REPO / "leaderboards" / "results" / "reclip-demo__shapes-zeroshot.json"
    results = tmp_path / "leaderboards" / "results"
    results.mkdir(parents=True)
    shutil.copy2(committed, results)
    out = run_cli("--model", "reclip-demo", "--task", "shapes-zeroshot", "--output", "leaderboards/results",
                  cwd=tmp_path, env={"RECLIP_CACHE": str(tmp_path / "fresh-cache")})
    assert out.returncode == 0, out.stderr
    kept = Path("leaderboards") / "results" / committed.name
    assert f"already measured, kept: {kept}" in out.stderr
    assert (results / committed.name).read_bytes() == committed.read_bytes()
    assert [p.name for p in results.iterdir()] == [committed.name]


def test_rerun_of_the_same_measurement_leaves_the_file_untouched(measured, capsys):
    argv, path = measured
    before = path.read_bytes()
    code, err = _eval(capsys, *argv)
    assert code == 0, err
    assert f"already measured, kept: {path}" in err and path.read_bytes() == before


def _new_weights(checkpoint: Path, seed: int) -> str:
    """Replace the checkpoint's weights by other ones of the same architecture; returns their sha256."""
    from reclip_eval.checkpoint import WEIGHTS_NAME, file_sha256, load_model, save_checkpoint

    model = load_model(checkpoint)
    torch.manual_seed(seed)
    for parameter in model.parameters():
        parameter.data.normal_(0, 0.02)
    save_checkpoint(model, checkpoint)
    return file_sha256(checkpoint / WEIGHTS_NAME)


def test_other_weights_are_refused_before_anything_is_evaluated_then_replaced_with_overwrite(measured, capsys):
    argv, path = measured
    before = path.read_bytes()
    old_sha = json.loads(before)["model"]["weights"]["sha256"]
    new_sha = _new_weights(Path(argv[1]), seed=11)
    # A missing data folder proves the refusal comes first: the data is never looked at.
    missing = [*argv[:5], str(path.parent / "no-such-data"), *argv[6:]]
    code, err = _eval(capsys, *missing)
    assert code == 2 and "Traceback" not in err, err
    assert str(path) in err and "model.weights.sha256" in err and old_sha[:12] in err and "--overwrite" in err
    assert path.read_bytes() == before

    code, err = _eval(capsys, *argv, "--overwrite")
    assert code == 0, err
    assert f"replaced {path}" in err and "model.weights.sha256" in err and new_sha[:12] in err
    assert json.loads(path.read_text())["model"]["weights"]["sha256"] == new_sha


@pytest.mark.parametrize("field, value", [
    ("task.data_fingerprint", "0" * 64),
    ("prompts.templates_sha256", "1" * 64),
    ("model.preprocess.interpolation", "bilinear"),
    ("precision", "bf16"),
    ("metrics.top1", -0.5),  # the same measurement with another number: refused, naming the metric
])
def test_a_file_recording_another_measurement_or_other_metrics_is_not_replaced(measured, capsys, field, value):
    argv, path = measured
    recorded = json.loads(path.read_text())
    *parents, leaf = field.split(".")
    node = recorded
    for key in parents:
        node = node[key]
    node[leaf] = value
    path.write_text(json.dumps(recorded))
    before = path.read_bytes()
    code, err = _eval(capsys, *argv)
    assert code == 2 and "Traceback" not in err, err
    assert str(path) in err and field in err and json.dumps(value) in err and "--overwrite" in err
    assert path.read_bytes() == before


def test_named_model_with_other_weights_does_not_take_its_file(synth_dir, tmp_path, capsys):
    """Issue #12 item 9: `--model reclip-demo --checkpoint OTHER` wrote reclip-demo's own file name (from the
    repository root: over the committed results)."""
    out = tmp_path / "out"
    base = ["--task", "shapes-zeroshot", "--data-dir", str(synth_dir), "--output", str(out), "--workers", "0"]
    code, err = _eval(capsys, "--model", "reclip-demo", *base)
    assert code == 0, err
    own = out / "reclip-demo__shapes-zeroshot.json"
    before = own.read_bytes()

    other = tmp_path / "other-demo"
    shutil.copytree(DEMO, other)
    sha = _new_weights(other, seed=12)
    code, err = _eval(capsys, "--model", "reclip-demo", "--checkpoint", str(other), *base)
    assert code == 0, err
    assert own.read_bytes() == before
    tagged = out / f"reclip-demo@{sha[:12]}__shapes-zeroshot.json"
    assert f"written: {tagged}" in err
    assert json.loads(tagged.read_text())["model"]["weights"]["sha256"] == sha
