"""Linear probe: logistic regression (scikit-learn) on frozen, L2-normalised image features, as CLIP_benchmark
offers. The inverse regularisation strength C is chosen on a stratified validation split of the training images
(a log grid), the probe is refitted on all training images with that C, then scored on the test images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reclip_eval.data.imagefolder import read_class_list
from reclip_eval.data.layouts import LayoutSpec, is_present, layout_of, read_classification
from reclip_eval.errors import DataError
from reclip_eval.eval.outcome import TaskOutcome
from reclip_eval.eval.task_kinds import Headline, TaskKind, register_task_kind, requires
from reclip_eval.eval.tasks import TaskSpec
from reclip_eval.zoo.adapter import ModelAdapter

if TYPE_CHECKING:  # torch is imported on use: the kind registers itself (`reclip-eval tasks`) without it
    from reclip_eval.eval.features import ImageFeatures

C_GRID = tuple(float(c) for c in np.logspace(-3, 3, 13))
VALIDATION_FRACTION = 0.2
SEED = 0


def choose_c(x: np.ndarray, y: np.ndarray, grid: tuple[float, ...] = C_GRID) -> tuple[float, dict[float, float]]:
    """The C with the best validation accuracy (ties: the smaller C, i.e. the stronger regularisation)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    n_classes = int((counts > 0).sum())
    n_val = max(int(np.ceil(VALIDATION_FRACTION * len(y))), n_classes)
    # A stratified split needs every class twice and a validation split with room for each class.
    stratified = counts[counts > 0].min() >= 2 and n_val <= len(y) - n_classes
    x_fit, x_val, y_fit, y_val = train_test_split(
        x, y, test_size=n_val if stratified else VALIDATION_FRACTION, random_state=SEED,
        stratify=y if stratified else None)
    scores = {}
    for c in grid:
        probe = LogisticRegression(C=c, max_iter=2000).fit(x_fit, y_fit)
        scores[c] = float(probe.score(x_val, y_val))
    best = max(grid, key=lambda c: (scores[c], -c))
    return best, scores


def fit_and_score(train: ImageFeatures, test: ImageFeatures, num_classes: int) -> tuple[dict[str, float], dict]:
    import torch
    from sklearn.linear_model import LogisticRegression

    from reclip_eval.eval.metrics import classification_metrics

    x_train, y_train = train.features, np.asarray(train.targets)
    best_c, scores = choose_c(x_train, y_train)
    probe = LogisticRegression(C=best_c, max_iter=2000).fit(x_train, y_train)
    # Scores for every class of the task, in label order (classes absent from training get -inf).
    logits = np.full((len(test.targets), num_classes), -np.inf)
    logits[:, probe.classes_] = probe.decision_function(test.features).reshape(len(test.targets), -1)
    metrics = classification_metrics(torch.from_numpy(logits), torch.tensor(test.targets))
    return metrics, {"C": best_c, "validation_accuracy": scores, "validation_fraction": VALIDATION_FRACTION}


def run_linear_probe(adapter: ModelAdapter, spec: TaskSpec, data_root: Path, layout: LayoutSpec, *, batch_size: int,
                     workers: int) -> TaskOutcome:
    from reclip_eval.data.image_dataset import ImageListDataset
    from reclip_eval.eval.features import encode_image_dataset

    classes = read_class_list(spec.resource(spec.classes))
    train_layout = next((t for t in spec.probe_train_layouts
                         if is_present(t, data_root, len(classes.ids), classes.ids)), None)
    if train_layout is None:
        raise DataError(f"task {spec.name!r}: no training images for the probe in {data_root} (looked for "
                        + ", ".join(f"{t.kind} {t.split}/" for t in spec.probe_train_layouts) + ")")
    encoded = {}
    for split, split_layout in (("train", train_layout), ("test", layout)):
        data = read_classification(split_layout, data_root, classes)
        dataset = ImageListDataset(data.items, adapter.transform, load=data.load)
        encoded[split] = (data, encode_image_dataset(adapter, dataset, batch_size=batch_size, workers=workers,
                                                     desc=f"{spec.name} {split}"))
    metrics, probe = fit_and_score(encoded["train"][1], encoded["test"][1], len(classes.ids))
    test_data, test = encoded["test"]
    train_data, train = encoded["train"]
    return TaskOutcome(
        metrics=metrics,
        counts={
            "train_images": len(train.indices), "train_images_skipped": len(train.skipped),
            "images_total": len(test_data.items), "images_evaluated": len(test.indices),
            "images_skipped": len(test.skipped), "classes": len(classes.ids),
            "metric_denominator": "images_evaluated (test split)",
        },
        skipped=[{"path": d.describe_source(d.items[i][0]), "reason": r}
                 for d, f in ((train_data, train), (test_data, test)) for i, r in f.skipped],
        data_files=[p for d in (train_data, test_data) for p, _ in d.items if isinstance(p, Path)],
        extra={"layout": layout.kind, "probe": probe},
    )


def _probe_problems(spec: TaskSpec) -> list[str]:
    problems = requires("classes", "probe_train_layouts")(spec)
    problems += [f"probe_train_layouts[{i}].kind: {layout.kind!r} cannot feed a linear probe's training images"
                 for i, layout in enumerate(spec.probe_train_layouts) if layout_of(layout).role != "classification"]
    return problems


register_task_kind(TaskKind(
    name="linear_probe", run=run_linear_probe, reads="classification",
    summary="logistic regression on frozen image features (C by validation); top-1 on the test images",
    validate=_probe_problems,
    headline=Headline(("top1",), measure="top-1 (%)", applies_to="linear probes", position=20),
))
