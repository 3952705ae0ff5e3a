"""Detector architecture and detector recipes (`training/detect-*.yaml`), parsed by the strict dataclass loader.

A detector recipe is told apart from a CLIP recipe by its top-level `detector:` key
(`reclip_eval.train.recipe.is_detector_recipe`). The recipe choices and where
they come from (ViTDet = Li et al. 2022, Exploring Plain Vision Transformer Backbones for Object Detection;
F-VLM = Kuo et al. 2023, Open-Vocabulary Object Detection upon Frozen Vision and Language Models; RO-ViT = Kim et
al. 2023, Region-Aware Pretraining for Open-Vocabulary Object Detection with Vision Transformers):

- square input canvas, large-scale jitter, AdamW with layer-wise lr decay, step decay: ViTDet;
- windowed attention with a few global blocks, simple feature pyramid, 2-conv RPN head, 4conv1fc box head and
  4-conv mask head with LayerNorm: ViTDet;
- class-agnostic box regression and masks, cosine classifier against text embeddings with a learned background
  embedding and a temperature, base-only training, geometric-mean ensemble with the frozen VLM's region scores
  (alpha for base, beta for novel categories): F-VLM, which RO-ViT follows with a finetuned backbone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from reclip_eval.config import from_dict, load_yaml, parse_with_overrides, to_dict
from reclip_eval.data.synth.export import SynthConfig
from reclip_eval.errors import ConfigError
from reclip_eval.paths import data_folder
from reclip_eval.registry import find_named_yaml
from reclip_eval.train.param_rules import ParamRule, detector_rules
from reclip_eval.train.schedule import LrSchedule

VITDET_WARMUP_FACTOR = 0.001  # ViTDet's warmup starts at this fraction of the lr


@dataclass(frozen=True)
class BackboneConfig:
    image_size: int = 1024  # side of the square input canvas (ViTDet: 1024)
    window_size: int = 14  # tokens per window side in the windowed blocks (ViTDet: 14)
    # Blocks with global attention; empty: the last block of each quarter of the depth (ViTDet: 2, 5, 8, 11 for B).
    global_blocks: list[int] = field(default_factory=list)
    pyramid_channels: int = 256  # simple feature pyramid width (ViTDet: 256)
    layer_decay: float = 0.8  # layer-wise lr decay (ViTDet: 0.7 for B, 0.8 for L, 0.9 for H); 1.0 = off
    freeze: bool = False  # F-VLM freezes the backbone; ViTDet and RO-ViT finetune it

    def __post_init__(self) -> None:
        if self.window_size <= 0 or self.pyramid_channels <= 0 or self.image_size <= 0:
            raise ValueError("image_size, window_size and pyramid_channels must be positive")
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")


@dataclass(frozen=True)
class HeadsConfig:
    anchor_sizes: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])  # one per level, stride 4..64
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    rpn_conv_depth: int = 2  # ViTDet: 2 convs in the RPN head
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 1000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    box_convs: int = 4  # ViTDet: 4conv1fc box head with LayerNorm
    box_fc_dim: int = 1024
    mask_convs: int = 4
    roi_batch_size_per_image: int = 512
    # RoI -> pyramid level: torchvision's LevelMapper with canonical box size 224 at level 4 on 1024 px inputs;
    # scaled with the canvas so small canvases pick the same levels for the same relative box size.
    canonical_box_size: int = 224
    detections_per_image: int = 300  # LVIS caps results at 300 per image
    score_threshold: float = 0.0001
    nms_threshold: float = 0.5

    def __post_init__(self) -> None:
        if len(self.anchor_sizes) != 5:
            raise ValueError(f"anchor_sizes: one size per pyramid level (strides 4, 8, 16, 32, 64), got "
                             f"{len(self.anchor_sizes)}")


@dataclass(frozen=True)
class ClassifierConfig:
    # Prompt templates (one per line with `{}`): a path relative to the tasks/ data folder, or an absolute path.
    # The resolved templates are stored in the detector's config.json, so inference uses the training prompts.
    templates: str = "imagenet/templates.txt"
    temperature: float = 0.01  # cosine-similarity logits are divided by this (F-VLM: a fixed temperature)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")


@dataclass(frozen=True)
class OpenVocabConfig:
    """Score ensembling at inference (F-VLM eq. 3): s = s_det^(1-a) * s_vlm^a with a = alpha for base
    categories and a = beta for novel ones. Defaults: F-VLM's published LVIS values."""

    vlm_scores: bool = True
    alpha: float = 0.35
    beta: float = 0.65

    def __post_init__(self) -> None:
        if not (0 <= self.alpha <= 1 and 0 <= self.beta <= 1):
            raise ValueError(f"alpha and beta must be in [0, 1], got {self.alpha}, {self.beta}")


@dataclass(frozen=True)
class DetectorConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    open_vocab: OpenVocabConfig = field(default_factory=OpenVocabConfig)


@dataclass(frozen=True)
class DetectDataConfig:
    folder: str  # under the data root (--data-dir): the LVIS folder
    annotations: str = "lvis_v1_train.json"
    images: str = "."  # where train2017/ and val2017/ are, relative to the folder (or absolute)
    # Generate the synthetic LVIS set when the folder is missing. In the YAML also the name of a task whose
    # `synth:` settings to use (`synth: shapes-lvis`), so that the detector trains on the world it is evaluated on.
    synth: SynthConfig | None = None
    train_frequencies: list[Literal["r", "c", "f"]] = field(default_factory=lambda: ["c", "f"])  # base categories
    workers: int = 2


@dataclass(frozen=True)
class ScheduleConfig:
    steps: int
    batch_size: int
    lr: float = 2e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 250
    decay_at: list[float] = field(default_factory=lambda: [0.889, 0.963])  # fractions of steps; lr x0.1 at each
    grad_clip_norm: float | None = None
    lsj_scale: tuple[float, float] = (0.1, 2.0)  # large-scale jitter range (ViTDet, F-VLM)
    # AdamW settings per parameter, first match wins (reclip_eval/train/param_rules.py); the default is ViTDet's:
    # layer-wise lr decay over the backbone (detector.backbone.layer_decay), no weight decay on norms, biases,
    # position and background embeddings.
    param_rules: list[ParamRule] = field(default_factory=detector_rules)

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0:
            raise ValueError("steps and batch_size must be positive")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"warmup_steps must be within [0, steps={self.steps}]")
        if not 0 < self.lsj_scale[0] <= self.lsj_scale[1]:
            raise ValueError(f"lsj_scale must be (low, high) with 0 < low <= high, got {self.lsj_scale}")

    def lr_schedule(self) -> LrSchedule:
        """ViTDet's: linear warmup from VITDET_WARMUP_FACTOR, x0.1 at each fraction of the steps in decay_at."""
        return LrSchedule("step", self.steps, self.warmup_steps, decay_at=tuple(self.decay_at),
                          warmup_from=VITDET_WARMUP_FACTOR)


@dataclass(frozen=True)
class DetectRecipe:
    name: str
    description: str
    detector: DetectorConfig
    data: DetectDataConfig
    schedule: ScheduleConfig
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    log_every: int = 20


def load_detect_recipe(name_or_path: str, overrides: list[str] | None = None) -> DetectRecipe:
    path = find_named_yaml("training", "recipe", name_or_path)
    raw = load_yaml(path)
    if "detector" not in raw:
        raise ConfigError(str(path), ["detector: missing; this is a CLIP recipe (run it with `reclip-eval train`)"])
    recipe = parse_with_overrides(lambda data: from_dict(DetectRecipe, _with_task_synth(data, path), source=str(path)),
                                  raw, overrides or [], path)
    if path.parent == data_folder("training") and recipe.name != path.stem:
        raise ConfigError(str(path), [f"name: {recipe.name!r} must equal the file name {path.stem!r}"])
    return recipe


def _with_task_synth(raw: dict, path: Path) -> dict:
    """`data.synth: TASK` -> that task's `synth:` settings (tasks/TASK.yaml), read from the task file itself."""
    data = raw.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("synth"), str):
        return raw
    task_path = find_named_yaml("tasks", "task", data["synth"])
    synth = load_yaml(task_path).get("synth")
    if not isinstance(synth, dict):
        raise ConfigError(str(path), [f"data.synth: task {data['synth']!r} ({task_path}) has no synth settings; "
                                      "name a synthetic task or give the settings"])
    return {**raw, "data": {**data, "synth": synth}}


def detect_recipe_to_yaml(recipe: DetectRecipe) -> str:
    return yaml.safe_dump(to_dict(recipe), sort_keys=False)
