"""Detection tasks (`kind: detection`, tasks/lvis.yaml, tasks/shapes-lvis.yaml): run a trained open-vocabulary
detector over an LVIS v1 set and score it with the LVIS evaluator (mask AP as `AP`, `APr`, ... as in the paper's
Table 4; box AP as `box_AP`, `box_APr`, ...)."""

from __future__ import annotations

from pathlib import Path

from reclip_eval.classifier.templates import prompts_record
from reclip_eval.data.layouts import LayoutSpec
from reclip_eval.errors import CheckpointError, DataError
from reclip_eval.eval.outcome import TaskOutcome
from reclip_eval.eval.task_kinds import Headline, TaskKind, register_task_kind
from reclip_eval.eval.tasks import TaskSpec
from reclip_eval.metrics.lvis import MAX_DETS_PER_IMAGE, detection_counts
from reclip_eval.metrics.lvis_inputs import check_annotations
from reclip_eval.zoo.adapter import ModelAdapter

MAX_BATCH = 8  # detection canvases are large (1024 px for LVIS): --batch-size is capped here


def run_detection(adapter: ModelAdapter, spec: TaskSpec, data_root: Path | str, layout: LayoutSpec, *,
                  batch_size: int, workers: int) -> TaskOutcome:
    from reclip_eval.detect.adapter import DetectorAdapter
    from reclip_eval.detect.data import read_lvis
    from reclip_eval.detect.predict import evaluate_predictions, predict_with

    if not isinstance(adapter, DetectorAdapter):
        raise CheckpointError(
            f"task {spec.name!r} needs a detector, and {adapter.model_id!r} is an image-text model: train a "
            f"detector from it with `reclip-eval detect train --recipe detect-shapes --backbone {adapter.model_id} "
            "--out runs/detector`, then pass --model runs/detector")
    if not isinstance(data_root, Path):
        raise DataError(f"task {spec.name!r} reads LVIS JSON from a folder, not a Hugging Face dataset")
    lvis = read_lvis(data_root / layout.annotations, data_root / layout.images)
    # Before the model runs: an annotation file without LVIS's federated fields would inflate AP with no word.
    check_annotations(lvis.raw, str(lvis.path))
    loaded = adapter.loaded
    # The adapter is placed (evaluate() did it): the detector runs on its device at its precision.
    predictions = predict_with(adapter, lvis, batch_size=max(1, min(batch_size, MAX_BATCH)), workers=workers)
    metrics = evaluate_predictions(lvis, predictions.detections)
    frequencies = {f: sum(c.frequency == f for c in lvis.categories) for f in ("r", "c", "f")}
    phrases = [" | ".join(c.phrases) for c in lvis.categories]
    return TaskOutcome(
        metrics=metrics,
        counts={
            "images_total": predictions.images_total,
            "images_evaluated": predictions.images_evaluated,
            "images_skipped": len(predictions.skipped),
            "detections": len(predictions.detections),
            "detection_counts": detection_counts(lvis.raw, predictions.detections),
            "categories": len(lvis.categories),
            "categories_by_frequency": frequencies,
            "novel_categories": predictions.novel_categories,
            # Unreadable images stay in the ground truth with no detections: they lower AP, never the denominator.
            "metric_denominator": "all images and categories of the annotation file",
        },
        skipped=predictions.skipped,
        prompts={**prompts_record(loaded.templates, phrases), "classnames_source": str(lvis.path)},
        data_files=[lvis.path, *(lvis.image_path(img) for img in lvis.images)],
        extra={"layout": layout.kind, "annotations": layout.annotations, "protocol": "lvis",
               "max_detections_per_image": min(MAX_DETS_PER_IMAGE, loaded.config.heads.detections_per_image),
               "open_vocab": {"vlm_scores": loaded.config.open_vocab.vlm_scores,
                              "alpha": loaded.config.open_vocab.alpha, "beta": loaded.config.open_vocab.beta},
               "mask_metrics": "unprefixed (AP, APr, ...)", "box_metrics": "box_ prefix"},
    )


register_task_kind(TaskKind(
    name="detection", run=run_detection, reads="detection",
    summary="open-vocabulary detection with a trained detector; LVIS mask and box AP, APr/APc/APf",
    headline=Headline(("AP", "APr"), measure="mask AP / APr (%)", applies_to="detection", position=40),
))
