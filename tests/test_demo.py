"""The bundled demo model and the README's first command."""

import dataclasses
import json

from reclip_eval.data.synth.export import synthesize
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task
from reclip_eval.zoo.resolve import load_adapter

from .conftest import run_cli

# Chance is 1/36 = 2.8%. The bundled model measures 85.3% (zoo/reclip-demo/README.md) and issue 14 asks for 60%;
# this bound leaves room for a different draw of images while still failing for a model that has not learnt shape.
DEMO_MIN_TOP1 = 0.6
# The evaluation in the README's first command (tests/test_docs.py checks the README still says exactly this).
README_COMMAND = ("--model", "reclip-demo", "--task", "shapes-zeroshot")


def test_demo_accuracy_on_a_fresh_seed(tmp_path):
    task = load_task("shapes-zeroshot")  # another draw of the task's own world
    synthesize(tmp_path, dataclasses.replace(task.synth, seed=7, zeroshot_per_class=10), sets=["zeroshot"], workers=2)
    adapter = load_adapter("reclip-demo")
    results = evaluate(adapter, task, EvalOptions(data_dir=tmp_path, workers=0))
    assert results["counts"]["images_evaluated"] == 360
    assert results["metrics"]["top1"] > DEMO_MIN_TOP1, results["metrics"]


def test_demo_checkpoint_is_small_and_float16():
    adapter = load_adapter("reclip-demo")
    weights = adapter.source.path / "model.safetensors"
    assert weights.stat().st_size < 10 * 2**20
    # The file's own dtypes (the loader casts to float32, so the loaded model cannot show them).
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        dtypes = {f.get_slice(name).get_dtype() for name in f.keys()}
    assert dtypes == {"F16"}, dtypes
    assert adapter.image_size == 64
    training = json.loads((adapter.source.path / "training.json").read_text())
    assert [s["image_size"] for s in training["stages"]] == [32, 64]


def test_readme_main_command_on_a_fresh_cache(tmp_path):
    out = run_cli(*README_COMMAND, env={"RECLIP_CACHE": str(tmp_path / "c")},
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert any("shapes-zeroshot" in line and "top1" in line for line in out.stdout.splitlines())
    results = json.loads((tmp_path / "results" / "reclip-demo__shapes-zeroshot.json").read_text())  # the default
    assert results["counts"]["images_evaluated"] == 720 and results["metrics"]["top1"] > DEMO_MIN_TOP1
