"""Zero-shot classification: prompt-ensembled class embeddings (Radford et al. 2021), top-1/top-5, per-class recall."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reclip_eval.classifier.templates import prompts_record
from reclip_eval.data.layouts import LayoutSpec, read_classification
from reclip_eval.eval.outcome import TaskOutcome
from reclip_eval.eval.set_lists import task_classes, task_templates
from reclip_eval.eval.task_kinds import Headline, TaskKind, register_task_kind, requires
from reclip_eval.eval.tasks import TaskSpec
from reclip_eval.zoo.adapter import ModelAdapter

if TYPE_CHECKING:  # torch is imported on use: the kind registers itself (`reclip-eval tasks`) without it
    import torch

    from reclip_eval.data.imagefolder import ClassList
    from reclip_eval.data.layouts import ClassificationData
    from reclip_eval.eval.features import ImageFeatures


def build_classifier(adapter: ModelAdapter, class_names: list[str], templates: list[str], *,
                     batch_size: int) -> torch.Tensor:
    """(N_classes, D): per class, the mean of its L2-normalised template embeddings, re-normalised."""
    from reclip_eval.classifier.ensemble import ensemble_prompts
    from reclip_eval.eval.features import encode_texts

    def encode(texts: list[str]) -> np.ndarray:
        return encode_texts(adapter, texts, batch_size=batch_size, desc="class prompts")

    return ensemble_prompts(encode, class_names, templates)


def zeroshot_scores(adapter: ModelAdapter, data: ClassificationData, classes: ClassList, templates: list[str], *,
                    batch_size: int, workers: int, desc: str) -> tuple[torch.Tensor, ImageFeatures]:
    """(logits (N_evaluated, N_classes), the encoded images): every readable image of `data` scored against the
    prompt-ensembled classifier, cached per weights, text config, prompts and precision."""
    import torch

    from reclip_eval.classifier.cache import cache_key, cached_class_embeddings
    from reclip_eval.data.image_dataset import ImageListDataset
    from reclip_eval.eval.features import encode_image_dataset

    key = cache_key(weights_sha256=(adapter.describe().get("weights") or {}).get("sha256"),
                    text_config=adapter.text_config(), templates=templates, class_names=list(classes.names),
                    precision=adapter.precision)
    classifier = cached_class_embeddings(key, lambda: build_classifier(
        adapter, list(classes.names), templates, batch_size=batch_size))
    dataset = ImageListDataset(data.items, adapter.transform, load=data.load)
    encoded = encode_image_dataset(adapter, dataset, batch_size=batch_size, workers=workers, desc=desc,
                                   describe=data.describe_source)
    return torch.from_numpy(encoded.features) @ classifier.t(), encoded


def run_zeroshot(adapter: ModelAdapter, spec: TaskSpec, data_root: Path | str, layout: LayoutSpec, *,
                 batch_size: int, workers: int) -> TaskOutcome:
    import torch

    from reclip_eval.eval.metrics import classification_metrics

    classes = task_classes(spec, data_root, layout)  # the task's lists, or the set's own (from_data)
    templates = task_templates(spec, data_root, layout)
    data = read_classification(layout, data_root, classes)
    logits, encoded = zeroshot_scores(adapter, data, classes, templates, batch_size=batch_size, workers=workers,
                                      desc=spec.name)
    metrics = classification_metrics(logits, torch.tensor(encoded.targets))
    return TaskOutcome(metrics=metrics, counts=zeroshot_counts(data, encoded, classes),
                       **zeroshot_record(data, encoded, classes, templates, layout))


def zeroshot_counts(data: ClassificationData, encoded: ImageFeatures, classes: ClassList,
                    denominator: str = "images_evaluated", **more: int) -> dict[str, Any]:
    """The counts of a zero-shot classification's results: images read and skipped, classes with and without
    images (`more`: a kind's own counts), and what the metrics were divided by."""
    return {"images_total": len(data.items), "images_evaluated": len(encoded.indices),
            "images_skipped": len(encoded.skipped), "classes": len(classes.ids),
            "classes_without_images": len(data.empty_classes), **more, "metric_denominator": denominator}


def zeroshot_record(data: ClassificationData, encoded: ImageFeatures, classes: ClassList, templates: list[str],
                    layout: LayoutSpec) -> dict:
    """The TaskOutcome fields besides metrics and counts of a zero-shot classifier's run: skipped images, prompts,
    data files, and the extras (classes without images, the layout and what it counted)."""
    return {
        "skipped": [{"path": data.describe_source(data.items[i][0]), "reason": r} for i, r in encoded.skipped],
        "prompts": prompts_record(templates, list(classes.names)),
        "data_files": [p for p, _ in data.items if isinstance(p, Path)] + data.files,
        "extra": {"classes_without_images": data.empty_classes, "layout": layout.kind, **data.extra},
    }


register_task_kind(TaskKind(
    name="zeroshot_classification", run=run_zeroshot, reads="classification",
    summary="class names x prompt templates -> a text classifier; top-1, top-5, mean per-class recall",
    validate=requires("classes", "templates"),
    headline=Headline(("top1",), measure="Zero-shot top-1 (%)", applies_to="classification tasks", position=10),
    hf_task_type="zero-shot-image-classification",
))
