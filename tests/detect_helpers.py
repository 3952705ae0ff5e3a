"""Tiny settings shared by the detector tests: a 64 px synthetic LVIS set and a detector small enough to train a
few steps on a CPU in seconds."""

from __future__ import annotations

from pathlib import Path

from reclip_eval.data.synth.export import SynthConfig, synthesize

from .conftest import task_world

TINY_LVIS = SynthConfig(seed=2, image_size=64, lvis_train_images=24, lvis_val_images=10, **task_world("shapes-lvis"))

# Overrides of training/detect-shapes.yaml for the `tiny` CLIP preset (patch 8, width 32, 2 blocks).
TINY_DETECTOR = [
    "detector.backbone.image_size=64", "detector.backbone.window_size=4", "detector.backbone.global_blocks=[1]",
    "detector.backbone.pyramid_channels=32", "detector.heads.box_convs=1", "detector.heads.box_fc_dim=64",
    "detector.heads.mask_convs=1", "detector.heads.roi_batch_size_per_image=32",
    "detector.heads.rpn_pre_nms_top_n_train=100", "detector.heads.rpn_post_nms_top_n_train=50",
    "detector.heads.rpn_pre_nms_top_n_test=100", "detector.heads.rpn_post_nms_top_n_test=50",
    "detector.heads.detections_per_image=50",
    "schedule.steps=3", "schedule.batch_size=2", "schedule.warmup_steps=1", "log_every=1", "data.workers=0",
]


def write_tiny_lvis(root: Path, workers: int = 1) -> Path:
    synthesize(root, TINY_LVIS, sets=["lvis"], workers=workers)
    return root / "shapes-lvis"
