"""Recipes (`training/NAME.yaml`): a model, a data source and a list of stages.

Each stage inherits every key from the stage before it and states only what changes (deep merge), so the paper's
"low-res main phase, then a short high-res finetune" is two short blocks. A recipe may name one `base:` recipe
(one level only) whose keys it overrides; there `stages:` may be a mapping from stage name to the keys that change
(`stages: {hires: {steps: 20000}}`) instead of a full list. `key=value` overrides from the command line apply before stage
inheritance, e.g. `stages.0.steps=100`. The resolved recipe is what gets saved with the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from reclip_eval.config import apply_overrides, deep_merge, from_dict, load_yaml, to_dict
from reclip_eval.data.synth.export import SynthConfig
from reclip_eval.errors import ConfigError
from reclip_eval.models.presets import ArchitectureSpec
from reclip_eval.registry import find_named_yaml, named_yaml_files


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["adamw", "adafactor"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)  # adamw only
    eps: float = 1e-6  # adamw only
    grad_clip_norm: float | None = 1.0


@dataclass(frozen=True)
class StageConfig:
    name: str
    image_size: int
    text_length: int  # tokens per caption in this stage (the paper: 16 in the main phase)
    batch_size: int
    steps: int
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    warmup_steps: int = 0
    schedule: Literal["linear", "cosine", "constant"] = "linear"  # decay after warmup; the paper uses linear
    # After warmup the lr goes from start_lr_ratio to end_lr_ratio (fractions of optimizer.lr); chaining the ratios
    # of consecutive stages expresses one schedule across stages (the multi-grid recipe).
    start_lr_ratio: float = 1.0
    end_lr_ratio: float = 0.0
    # FLIP-style random masking of image tokens (the paper's Table 10 baseline); 0 = off.
    mask_ratio: float = 0.0
    # Pairs per forward pass on each process when the per-process batch does not fit in memory: the loss and the
    # gradients stay those of the full global batch (reclip_eval/train/chunked.py). None: the whole batch at once.
    micro_batch_size: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.mask_ratio < 1:
            raise ValueError(f"stage {self.name!r}: mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.steps <= 0 or self.batch_size <= 0:
            raise ValueError(f"stage {self.name!r}: steps and batch_size must be positive")
        if self.micro_batch_size is not None and self.micro_batch_size <= 0:
            raise ValueError(f"stage {self.name!r}: micro_batch_size must be positive, got {self.micro_batch_size}")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"stage {self.name!r}: warmup_steps must be within [0, steps={self.steps}]")


@dataclass(frozen=True)
class DataConfig:
    # Shards relative to --data-dir (or absolute, or URLs): a folder of .tar files, a glob, or brace notation
    # such as "shapes-train/shapes-train-{000000..000019}.tar".
    shards: str
    synth: SynthConfig | None = None  # generate the shards from the synthetic world when they are missing
    shuffle_buffer: int = 2000
    workers: int = 2


@dataclass(frozen=True)
class RecipeConfig:
    name: str
    description: str
    model: ArchitectureSpec
    data: DataConfig
    stages: list[StageConfig]
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    log_every: int = 50
    save_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    checkpoint_every: int = 1000  # steps between resume points (also written at the end of every stage); 0: off
    keep_checkpoints: int = 2  # resume points kept on disk
    tensorboard: bool = True  # training curves in <out>/tensorboard (when the tensorboard package is installed)
    activation_checkpointing: bool = False  # recompute block activations in backward: less memory, ~30% more compute
    compile: bool = False  # torch.compile the model for each stage
    # Under torchrun: "ddp" replicates the model on every process; "fsdp" shards parameters, gradients and
    # optimizer states across them (train/parallel.py). One process: ignored.
    data_parallel: Literal["ddp", "fsdp"] = "ddp"


def resolve_stages(stages: list[Any], source: str) -> list[dict[str, Any]]:
    """Stage i = stage i-1 deep-merged with what stage i states."""
    if not isinstance(stages, list) or not stages:
        raise ConfigError(source, ["stages: expected a non-empty list of stages"])
    resolved: list[dict[str, Any]] = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            raise ConfigError(source, [f"stages[{i}]: expected a mapping, got {stage!r}"])
        resolved.append(deep_merge(resolved[-1], stage) if resolved else dict(stage))
    return resolved


def _merged_raw(path: Path) -> dict[str, Any]:
    raw = load_yaml(path)
    base_name = raw.pop("base", None)
    if base_name is None:
        return raw
    base_path = path.parent / base_name if (path.parent / base_name).is_file() else None
    base_path = base_path or find_named_yaml("training", "recipe", str(base_name).removesuffix(".yaml"))
    base = load_yaml(base_path)
    if "base" in base:
        raise ConfigError(str(path), [f"base: {base_name} itself has a base; only one level of inheritance"])
    stage_patches = raw.pop("stages", None) if isinstance(raw.get("stages"), dict) else None
    merged = deep_merge(base, raw)
    if stage_patches is not None:
        merged["stages"] = _patch_stages_by_name(base.get("stages"), stage_patches, path)
    return merged


def _patch_stages_by_name(stages: Any, patches: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    names = [s.get("name") for s in stages or [] if isinstance(s, dict)]
    unknown = [n for n in patches if n not in names]
    if unknown:
        raise ConfigError(str(path), [f"stages.{n}: no stage of that name in the base recipe (has {names})"
                                      for n in unknown])
    return [deep_merge(s, patches.get(s.get("name"), {})) for s in stages]


def is_detector_recipe(path: str | Path) -> bool:
    """Detector recipes (`training/detect-*.yaml`, run by `reclip-eval detect train`) have a `detector:` key."""
    return "detector" in load_yaml(path)


def clip_recipe_files() -> dict[str, Path]:
    """name -> path of the CLIP recipes under training/ (the detector recipes beside them left out)."""
    return {name: path for name, path in named_yaml_files("training").items() if not is_detector_recipe(path)}


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> RecipeConfig:
    path = find_named_yaml("training", "recipe", name_or_path)
    if is_detector_recipe(path):
        raise ConfigError(str(path), [f"detector: this is a detector recipe; run it with `reclip-eval detect train "
                                      f"--recipe {path.stem} --backbone MODEL --out DIR`"])
    raw = apply_overrides(_merged_raw(path), overrides or [], source=f"{path} (with overrides)")
    raw["stages"] = resolve_stages(raw.get("stages"), str(path))
    recipe = from_dict(RecipeConfig, raw, source=str(path))
    names = [s.name for s in recipe.stages]
    problems = [f"stages: stage name {n!r} is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
    context = recipe.model.build(source=str(path)).text.context_length
    problems += [f"stages.{s.name}.text_length: {s.text_length} exceeds the model's context_length {context}"
                 for s in recipe.stages if s.text_length > context]
    if problems:
        raise ConfigError(str(path), problems)
    return recipe


def recipe_to_yaml(recipe: RecipeConfig) -> str:
    """The fully resolved recipe (every stage complete), as saved in checkpoints and shown by `config show`."""
    return yaml.safe_dump(to_dict(recipe), sort_keys=False)
