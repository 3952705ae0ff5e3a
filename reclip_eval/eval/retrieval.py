"""Zero-shot image-text retrieval (Flickr30K / COCO Karpathy test splits and the synthetic twin)."""

from __future__ import annotations

from pathlib import Path

from reclip_eval.data.layouts import LayoutSpec, read_retrieval
from reclip_eval.eval.outcome import TaskOutcome
from reclip_eval.eval.task_kinds import Headline, TaskKind, register_task_kind
from reclip_eval.eval.tasks import TaskSpec
from reclip_eval.zoo.adapter import ModelAdapter


def run_retrieval(adapter: ModelAdapter, spec: TaskSpec, data_root: Path, layout: LayoutSpec, *, batch_size: int,
                  workers: int) -> TaskOutcome:
    import torch  # torch is imported on use: the kind registers itself (`reclip-eval tasks`) without it

    from reclip_eval.data.image_dataset import ImageListDataset
    from reclip_eval.eval.features import encode_image_dataset, encode_texts
    from reclip_eval.eval.metrics import retrieval_metrics

    dataset_def = read_retrieval(layout, data_root)
    dataset = ImageListDataset([(p, i) for i, p in enumerate(dataset_def.image_paths)], adapter.transform,
                               **({"load": dataset_def.load} if dataset_def.load else {}))
    encoded = encode_image_dataset(adapter, dataset, batch_size=batch_size, workers=workers, desc=spec.name)
    # A skipped (corrupt) image takes its captions with it: they have no image left to retrieve.
    kept_row = {image: row for row, image in enumerate(encoded.targets)}
    kept_captions = [j for j, image in enumerate(dataset_def.caption_image) if image in kept_row]
    captions = [dataset_def.captions[j] for j in kept_captions]
    caption_image = torch.tensor([kept_row[dataset_def.caption_image[j]] for j in kept_captions])
    text_features = encode_texts(adapter, captions, batch_size=batch_size, desc="captions")
    scores = torch.from_numpy(encoded.features) @ torch.from_numpy(text_features).t()
    metrics = retrieval_metrics(scores, caption_image)
    return TaskOutcome(
        metrics=metrics,
        counts={
            "images_total": len(dataset),
            "images_evaluated": len(encoded.indices),
            "images_skipped": len(encoded.skipped),
            "captions_total": len(dataset_def.captions),
            "captions_evaluated": len(captions),
            "metric_denominator": "i2t: images_evaluated; t2i: captions_evaluated",
        },
        skipped=[{"path": str(dataset_def.image_paths[i]), "reason": r} for i, r in encoded.skipped],
        data_files=dataset_def.files or list(dataset_def.image_paths) + [data_root / layout.annotations],
        extra={"layout": layout.kind, **dataset_def.extra},
    )


register_task_kind(TaskKind(
    name="retrieval", run=run_retrieval, reads="retrieval",
    summary="image <-> caption retrieval; R@1/5/10 both ways",
    headline=Headline(("i2t_R@1", "t2i_R@1"), measure="image->text / text->image R@1 (%)", applies_to="retrieval",
                      position=30),
    hf_task_type="image-text-retrieval",
))
