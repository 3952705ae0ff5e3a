"""Metrics over groups of images and over classes that DataComp takes from WILDS (its eval_utils/wilds_eval.py and
fairness_eval.py): the worst group's accuracy and the macro F1. Pure functions on tensors."""

from __future__ import annotations

import torch


def worst_group_accuracy(correct: torch.Tensor, groups: torch.Tensor) -> tuple[float, dict[int, tuple[int, float]]]:
    """correct: (N,) bool, an image's prediction right; groups: (N,) int, its group (a metadata value).

    The lowest accuracy among the groups that have images, and per group (images, accuracy). This is WILDS'
    `Metric.compute_group_wise` worst-group value (`worst(group_metrics[group_counts > 0])`, the minimum for
    accuracy) under a CombinatorialGrouper on one field, as DataComp scores FMoW's regions (`acc_worst_region`: its
    "Other" exclusion matches no group, the evaluator has no metadata map), GeoDE's regions (`acc_wg`) and Dollar
    Street's income groups (`acc_top5_wg`, with top-5 correctness)."""
    if correct.numel() == 0:
        raise ValueError("no images to score")
    per_group = {}
    for group in groups.unique().tolist():
        members = correct[groups == group]
        per_group[int(group)] = (int(members.numel()), members.float().mean().item())
    return min(accuracy for _, accuracy in per_group.values()), per_group


def macro_f1(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """predictions, targets: (N,) class indices.

    The mean over the classes present in `targets` of F1 = 2 TP / (2 TP + FP + FN): sklearn's
    `f1_score(targets, predictions, average="macro", labels=unique(targets))`, which WILDS' F1 metric calls and
    DataComp reports for iWildCam as `F1-macro_all`. Classes only predicted do not enter the mean (their false
    positives count against nothing); a class never predicted scores 0."""
    if targets.numel() == 0:
        raise ValueError("no images to score")
    scores = []
    for label in targets.unique().tolist():
        tp = ((predictions == label) & (targets == label)).sum().item()
        fp = ((predictions == label) & (targets != label)).sum().item()
        fn = ((predictions != label) & (targets == label)).sum().item()
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(sum(scores) / len(scores))
