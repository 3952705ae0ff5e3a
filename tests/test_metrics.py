"""Metric semantics on hand-made cases (peer equality with clip_benchmark comes with the evaluation suite)."""

import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from reclip_eval.eval.metrics import classification_metrics, retrieval_metrics


def test_classification_topk_and_per_class_recall():
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    targets = torch.tensor([0, 1, 1, 2])
    m = classification_metrics(logits, targets, ks=(1, 2))
    assert m["top1"] == pytest.approx(0.75) and m["top2"] == pytest.approx(1.0)
    expected = balanced_accuracy_score(targets.numpy(), logits.argmax(1).numpy())
    assert m["mean_per_class_recall"] == pytest.approx(expected)
    assert "top5" not in classification_metrics(logits, targets)  # k above the number of classes is skipped


def test_retrieval_any_caption_hit_and_text_to_image():
    # 2 images; captions 0,1 -> image 0; captions 2,3 -> image 1.
    scores = torch.tensor([[0.1, 0.9, 0.8, 0.0],
                           [0.5, 0.4, 0.3, 0.2]])
    caption_image = torch.tensor([0, 0, 1, 1])
    m = retrieval_metrics(scores, caption_image, ks=(1, 2))
    assert m["i2t_R@1"] == pytest.approx(0.5)  # image 0 hits caption 1; image 1's best is caption 0 (miss)
    assert m["i2t_R@2"] == pytest.approx(0.5)  # image 1's top-2 is captions 0,1: still a miss
    # t2i: caption 0 -> image 1 best (miss); 1 -> 0 (hit); 2 -> 0 (miss); 3 -> 1 (hit)
    assert m["t2i_R@1"] == pytest.approx(0.5) and m["t2i_R@2"] == pytest.approx(1.0)
