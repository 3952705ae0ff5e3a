"""Pure metric functions. Semantics and shapes are stated because peers differ (see each docstring)."""

from __future__ import annotations

import torch


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """logits: (N_images, N_classes); targets: (N_images,) class indices.

    top-k: fraction of images whose class is among the k highest logits (ties broken by `torch.topk`, as
    CLIP_benchmark does). mean_per_class_recall: recall averaged over the classes present in `targets`
    (sklearn's `balanced_accuracy_score`).
    """
    n_images, n_classes = logits.shape
    if n_images == 0:
        raise ValueError("no images to score")
    metrics: dict[str, float] = {}
    top = logits.topk(min(max(ks), n_classes), dim=1).indices  # (N, k)
    correct = top == targets.view(-1, 1)
    for k in ks:
        if k <= n_classes:
            metrics[f"top{k}"] = correct[:, :k].any(dim=1).float().mean().item()
    predictions = top[:, 0]
    recalls = [(predictions[targets == c] == c).float().mean().item() for c in targets.unique().tolist()]
    metrics["mean_per_class_recall"] = float(sum(recalls) / len(recalls))
    return metrics


def retrieval_metrics(
    scores: torch.Tensor, caption_image: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10)
) -> dict[str, float]:
    """scores: (N_images, N_captions) similarities; caption_image: (N_captions,) index of each caption's image.

    i2t_R@k (image -> text): fraction of images with *any* of their captions among the k best-scoring captions
    (the CLIP paper's recall). t2i_R@k (text -> image): fraction of captions whose image is among the k
    best-scoring images. CLIP_benchmark calls these `text_retrieval_recall@k` and `image_retrieval_recall@k`.
    """
    n_images, n_captions = scores.shape
    positives = torch.zeros(n_images, n_captions, dtype=torch.bool, device=scores.device)
    positives[caption_image, torch.arange(n_captions, device=scores.device)] = True
    metrics: dict[str, float] = {}
    for k in ks:
        top_captions = scores.topk(min(k, n_captions), dim=1).indices  # (N_images, k)
        metrics[f"i2t_R@{k}"] = positives.gather(1, top_captions).any(dim=1).float().mean().item()
    for k in ks:
        top_images = scores.t().topk(min(k, n_images), dim=1).indices  # (N_captions, k)
        metrics[f"t2i_R@{k}"] = (top_images == caption_image.view(-1, 1)).any(dim=1).float().mean().item()
    return metrics


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """scores: (N_images, N_classes); targets: (N_images, N_classes) 0/1, an image's classes.

    Per class, the images ranked by score (descending): AP = the mean of the precision at the rank of each positive
    image (uninterpolated, over all N images); mAP = the mean over all classes, a class without positives counting
    0 (the task's counts say how many). This is CLIP_benchmark's `average_precision_per_class` (from torchnet's
    APMeter) and its multilabel `mean_average_precision`.
    """
    n_images = scores.shape[0]
    if n_images == 0:
        raise ValueError("no images to score")
    order = scores.argsort(dim=0, descending=True, stable=True)  # (N, C): per class, images best first
    truth = targets.gather(0, order).float()
    precision = truth.cumsum(0) / torch.arange(1, n_images + 1, dtype=torch.float32).view(-1, 1)
    per_class = (precision * truth).sum(0) / truth.sum(0).clamp(min=1)
    return {"mAP": per_class.mean().item()}
