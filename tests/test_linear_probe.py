"""Linear probe: C chosen on a validation split, refit, scored on the test images."""

import numpy as np
import pytest
import torch

from reclip_eval.eval.features import ImageFeatures
from reclip_eval.eval.linear_probe import C_GRID, choose_c, fit_and_score

from .conftest import task_world


def _features(n_per_class, classes, dim, noise, seed):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:classes] * 3
    x = np.concatenate([centres[c] + noise * rng.normal(size=(n_per_class, dim)) for c in range(classes)])
    y = np.repeat(np.arange(classes), n_per_class)
    return ImageFeatures(torch.tensor(x, dtype=torch.float32), y.tolist(), list(range(len(y))))


def test_separable_features_are_probed_perfectly():
    train, test = _features(20, 5, 8, 0.1, 0), _features(10, 5, 8, 0.1, 1)
    metrics, probe = fit_and_score(train, test, num_classes=7)  # two task classes never seen in training
    assert metrics["top1"] == 1.0 and probe["C"] in C_GRID
    assert probe["validation_accuracy"][probe["C"]] == max(probe["validation_accuracy"].values())


def test_choose_c_prefers_the_validation_best():
    data = _features(30, 4, 6, 1.5, 2)  # overlapping classes: regularisation matters
    best, scores = choose_c(data.features.numpy(), np.asarray(data.targets))
    assert scores[best] == max(scores.values())
    assert best == min(c for c in C_GRID if scores[c] == scores[best])


def test_probe_task_end_to_end(tiny_checkpoint, tmp_path):
    from reclip_eval.eval.runner import EvalOptions, evaluate
    from reclip_eval.eval.tasks import load_task
    from reclip_eval.zoo.resolve import load_adapter

    results = evaluate(load_adapter(str(tiny_checkpoint)), load_task("shapes-linear-probe"),
                       EvalOptions(data_dir=tmp_path, workers=0))
    assert results["counts"]["train_images"] == 720 and results["counts"]["images_evaluated"] == 720
    assert results["task"]["probe"]["C"] in C_GRID
    # Even random features of these images carry colour: the probe beats chance (1/36) by far.
    assert results["metrics"]["top1"] > 0.1


def test_probe_without_training_images_says_so(tiny_checkpoint, tmp_path):
    import shutil

    from reclip_eval.errors import DataError
    from reclip_eval.eval.runner import EvalOptions, evaluate
    from reclip_eval.eval.tasks import load_task
    from reclip_eval.zoo.resolve import load_adapter

    adapter = load_adapter(str(tiny_checkpoint))
    evaluate(adapter, load_task("shapes-linear-probe"), EvalOptions(data_dir=tmp_path, workers=0))
    shutil.rmtree(tmp_path / "shapes-probe" / "train")
    with pytest.raises(DataError, match="no training images for the probe"):
        evaluate(adapter, load_task("shapes-linear-probe"), EvalOptions(data_dir=tmp_path, workers=0))


def test_linear_probe_on_any_classification_task(tiny_checkpoint, tmp_path):
    """`linear-probe:TASK`: the task's images are the test split, train/ beside them the training split."""
    import shutil

    from reclip_eval.data.synth.export import SynthConfig, synthesize
    from reclip_eval.errors import ConfigError
    from reclip_eval.eval.runner import EvalOptions, evaluate
    from reclip_eval.eval.tasks import load_task
    from reclip_eval.zoo.resolve import load_adapter

    synthesize(tmp_path, SynthConfig(seed=4, zeroshot_per_class=3, **task_world()), sets=["zeroshot"])
    shutil.copytree(tmp_path / "shapes-zeroshot" / "val", tmp_path / "shapes-zeroshot" / "train")
    task = load_task("linear-probe:shapes-zeroshot")
    assert task.kind == "linear_probe" and task.name == "linear-probe-shapes-zeroshot"
    results = evaluate(load_adapter(str(tiny_checkpoint)), task, EvalOptions(data_dir=tmp_path, workers=0))
    assert results["counts"]["train_images"] == results["counts"]["images_evaluated"] == 108
    with pytest.raises(ConfigError, match="needs a classification task"):
        load_task("linear-probe:shapes-retrieval")
