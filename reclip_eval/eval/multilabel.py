"""Zero-shot multi-label classification (PASCAL VOC 2007 as CLIP_benchmark scores it): the zero-shot classifier's
scores ranked per class, mean average precision over the classes."""

from __future__ import annotations

from pathlib import Path

from reclip_eval.data.layouts import LayoutSpec, read_multilabel
from reclip_eval.eval.outcome import TaskOutcome
from reclip_eval.eval.set_lists import task_classes, task_templates
from reclip_eval.eval.task_kinds import Headline, TaskKind, register_task_kind, requires
from reclip_eval.eval.tasks import TaskSpec
from reclip_eval.eval.zeroshot import zeroshot_record, zeroshot_scores
from reclip_eval.zoo.adapter import ModelAdapter


def run_multilabel(adapter: ModelAdapter, spec: TaskSpec, data_root: Path | str, layout: LayoutSpec, *,
                   batch_size: int, workers: int) -> TaskOutcome:
    import numpy as np
    import torch

    from reclip_eval.eval.metrics import mean_average_precision

    classes = task_classes(spec, data_root, layout)  # the task's lists, or the set's own (from_data)
    templates = task_templates(spec, data_root, layout)
    data = read_multilabel(layout, data_root, classes)
    logits, encoded = zeroshot_scores(adapter, data, classes, templates, batch_size=batch_size, workers=workers,
                                      desc=spec.name)
    targets = torch.from_numpy(np.stack(encoded.targets))
    return TaskOutcome(
        metrics=mean_average_precision(logits, targets),
        counts={
            "images_total": len(data.items),
            "images_evaluated": len(encoded.indices),
            "images_skipped": len(encoded.skipped),
            "classes": len(classes.ids),
            # mAP averages over every class; one without a positive among the evaluated images enters it as 0.
            "classes_without_positives": int((targets.sum(0) == 0).sum().item()),
            "metric_denominator": "classes (AP per class over images_evaluated)",
        },
        **zeroshot_record(data, encoded, classes, templates, layout),
    )


register_task_kind(TaskKind(
    name="multilabel", run=run_multilabel, reads="multilabel",
    summary="class names x prompt templates -> a text classifier; mean average precision over classes (VOC 2007)",
    validate=requires("classes", "templates"),
    headline=Headline(("mAP",), measure="mean average precision (%)", applies_to="multi-label tasks", position=15),
    hf_task_type="zero-shot-image-classification",
))
