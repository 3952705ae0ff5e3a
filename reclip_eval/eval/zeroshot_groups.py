"""Zero-shot classification scored as DataComp scores its WILDS and fairness sets: the zero-shot metrics plus the
macro F1 over classes (iWildCam) and, with the task's `groups:`, the worst group's top-1 / top-5 accuracy over a
field of each image's metadata (FMoW regions, GeoDE regions, Dollar Street income groups: the sets' npy members)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclip_eval.data.layouts import LayoutSpec, read_classification
from reclip_eval.errors import DataError
from reclip_eval.eval.outcome import TaskOutcome
from reclip_eval.eval.set_lists import task_classes, task_templates
from reclip_eval.eval.task_kinds import Headline, TaskKind, register_task_kind, requires
from reclip_eval.eval.tasks import TaskSpec
from reclip_eval.eval.zeroshot import zeroshot_counts, zeroshot_record, zeroshot_scores
from reclip_eval.zoo.adapter import ModelAdapter

METADATA_LAYOUTS = ("clip_benchmark_wds",)  # layouts whose samples can carry an npy metadata member


def run_zeroshot_groups(adapter: ModelAdapter, spec: TaskSpec, data_root: Path | str, layout: LayoutSpec, *,
                        batch_size: int, workers: int) -> TaskOutcome:
    import torch

    from reclip_eval.eval.group_metrics import macro_f1, worst_group_accuracy
    from reclip_eval.eval.metrics import classification_metrics

    classes = task_classes(spec, data_root, layout)
    templates = task_templates(spec, data_root, layout)
    data = read_classification(layout, data_root, classes)
    logits, encoded = zeroshot_scores(adapter, data, classes, templates, batch_size=batch_size, workers=workers,
                                      desc=spec.name)
    targets = torch.tensor(encoded.targets)
    metrics = classification_metrics(logits, targets)
    predictions = logits.argmax(dim=1)  # DataComp's prediction (wds_eval.py: logits.argmax(axis=1))
    metrics["f1_macro"] = macro_f1(predictions, targets)
    extra: dict[str, Any] = {}
    if spec.groups is not None:
        from reclip_eval.data.wds_metadata import read_image_metadata

        metadata = read_image_metadata([data.items[i][0] for i in encoded.indices])
        if spec.groups.column >= metadata.shape[1]:
            raise DataError(f"task {spec.name!r}: groups.column {spec.groups.column} ({spec.groups.field}) is past "
                            f"the set's metadata vectors of length {metadata.shape[1]}")
        groups = torch.from_numpy(metadata[:, spec.groups.column])
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        metrics["top1_worst_group"], top1_groups = worst_group_accuracy(predictions == targets, groups)
        metrics["top5_worst_group"], top5_groups = worst_group_accuracy((top5 == targets.view(-1, 1)).any(1), groups)
        extra["groups"] = {"field": spec.groups.field, "column": spec.groups.column,
                           "per_group": {str(g): {"images": n, "top1": top1_groups[g][1], "top5": top5_groups[g][1]}
                                         for g, (n, _) in sorted(top1_groups.items())}}
    record = zeroshot_record(data, encoded, classes, templates, layout)
    record["extra"].update(extra)
    counts = zeroshot_counts(data, encoded, classes, "images_evaluated (worst group: the images of each group; F1: "
                             "classes present)", **({"groups": len(extra["groups"]["per_group"])} if extra else {}))
    return TaskOutcome(metrics=metrics, counts=counts, **record)


def _validate(spec: Any) -> list[str]:
    problems = requires("classes", "templates")(spec)
    if spec.groups is not None:
        others = [layout.kind for layout in spec.data.layouts if layout.kind not in METADATA_LAYOUTS]
        if others:
            problems.append(f"groups: the metadata is read from {', '.join(METADATA_LAYOUTS)} sets only, not "
                            f"{', '.join(others)}")
        if spec.groups.column < 0:
            problems.append(f"groups.column: {spec.groups.column}; expected an index >= 0")
    return problems


register_task_kind(TaskKind(
    name="zeroshot_groups", run=run_zeroshot_groups, reads="classification",
    summary="zero-shot classification + macro F1 and (groups:) worst-group top-1/top-5 over each image's metadata "
            "(DataComp's WILDS / fairness sets)",
    validate=_validate,
    headline=Headline(("top1",), measure="Zero-shot top-1 (%)", applies_to="classification tasks", position=10),
    hf_task_type="zero-shot-image-classification",
))
