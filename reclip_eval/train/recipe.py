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
from typing import Any, ClassVar, Literal

import yaml

from reclip_eval.config import (
    Rule,
    above,
    at_least,
    deep_merge,
    enforce_rules,
    from_dict,
    load_yaml,
    parse_with_overrides,
    to_dict,
)
from reclip_eval.data.augment import PRESETS, AugmentOp, check_augment, describe_augment
from reclip_eval.data.synth.export import SynthConfig
from reclip_eval.errors import ConfigError, UnknownNameError
from reclip_eval.models.config import CLIPConfig
from reclip_eval.models.presets import ArchitectureSpec
from reclip_eval.models.text_reduction import TextTokens
from reclip_eval.models.token_reduction import ImageTokens, legacy_mask_ratio
from reclip_eval.registry import find_named_yaml, named_yaml_files
from reclip_eval.train.init_from import InitConfig
from reclip_eval.train.param_rules import ParamRule, clip_rules
from reclip_eval.train.schedule import LrSchedule


@dataclass(frozen=True)
class SlipConfig:
    """SLIP's self-supervised branch (train/slip.py): its head's sizes, its loss's temperature and weight."""

    mlp_dim: int = 4096
    embed_dim: int = 256
    temperature: float = 0.1
    weight: float = 1.0  # SLIP's ssl_scale

    config_rules: ClassVar[tuple[Rule, ...]] = (
        at_least("mlp_dim", 1), at_least("embed_dim", 1), above("temperature", 0), at_least("weight", 0),
    )

    def __post_init__(self) -> None:
        enforce_rules(self)


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["adamw", "adafactor"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)  # adamw only
    eps: float = 1e-6  # adamw only
    grad_clip_norm: float | None = 1.0
    # Per-parameter settings, first match wins (train/param_rules.py); the default is the CLIP practice of no
    # weight decay on gains, biases, the temperature and the position/class embeddings.
    param_rules: list[ParamRule] = field(default_factory=clip_rules)

    config_rules: ClassVar[tuple[Rule, ...]] = (
        at_least("lr", 0), at_least("weight_decay", 0), above("eps", 0),
        at_least("grad_clip_norm", 0, " (0 or null: no clipping)"),
        Rule(("betas",), lambda b: None if all(0 <= x < 1 for x in b) else f"each must be in [0, 1), got {list(b)}"),
        Rule(("param_rules",), lambda rules: None if not any(r.layer_decay for r in rules) else
             "layer_decay: only the detector backbone has layer-wise lr decay; use lr_scale"),
    )

    def __post_init__(self) -> None:
        enforce_rules(self)


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
    # Which patch tokens enter the image tower (models/token_reduction.py): `resize` (every patch of image_size,
    # RECLIP), or random (FLIP, the paper's Table 10 baseline) / grid / block masking. Replaced whole, not merged,
    # by a later stage that states it. Recipes from before it said `mask_ratio: r` (still read: random, ratio r).
    image_tokens: ImageTokens = field(default_factory=ImageTokens)
    # How a caption longer than text_length is cut (models/text_reduction.py): truncate (RECLIP), or CLIPA's random /
    # block / syntax reduction. Replaced whole by a later stage that states it.
    text_tokens: TextTokens = field(default_factory=TextTokens)
    # Training image augmentations, in order (data/augment.py), or the name of a preset (clipa, simclr, randaugment,
    # clip_da), which the resolved recipe lists op by op. None: resize and centre crop only, as evaluation does.
    augment: tuple[AugmentOp, ...] = ()
    # Pairs per forward pass on each process when the per-process batch does not fit in memory: the loss and the
    # gradients stay those of the full global batch (reclip_eval/train/chunked.py). None: the whole batch at once.
    micro_batch_size: int | None = None

    config_rules: ClassVar[tuple[Rule, ...]] = (
        at_least("image_size", 1), at_least("text_length", 1), at_least("steps", 1),
        # With one pair the softmax runs over a single logit: the loss is 0 at every step and nothing is learnt.
        at_least("batch_size", 2, " (a contrastive batch needs other pairs as each pair's negatives)"),
        at_least("micro_batch_size", 1), at_least("start_lr_ratio", 0), at_least("end_lr_ratio", 0),
        Rule(("warmup_steps", "steps"), lambda w, n: None if 0 <= w <= n else f"must be within [0, steps={n}], got {w}"),
        Rule(("augment",), check_augment),
    )

    def __post_init__(self) -> None:
        enforce_rules(self)

    def lr_schedule(self) -> LrSchedule:
        return LrSchedule(self.schedule, self.steps, self.warmup_steps, self.start_lr_ratio, self.end_lr_ratio)


@dataclass(frozen=True)
class DataConfig:
    # Shards relative to --data-dir (or absolute, or URLs): a folder of .tar files, a glob, or brace notation
    # such as "shapes-train/shapes-train-{000000..000019}.tar".
    shards: str
    synth: SynthConfig | None = None  # generate the shards from the synthetic world when they are missing
    shuffle_buffer: int = 2000
    workers: int = 2
    # "draft": JPEGs decoded at a reduced scale (1/2, 1/4 or 1/8) keeping both sides >= the stage's image_size, an
    # approximate speedup for low-resolution stages where decoding dominates (data/decode.py); "full": exact.
    decode: Literal["full", "draft"] = "full"
    # How a stage's data stream is seeded (issue 36). "keyed": from (recipe seed, stage index, rank) as separate keys,
    # so no two (seed, stage) pairs share a stream. "additive": recipe seed + stage index (+ 10,000 x rank), the
    # seeding before issue 36, under which seed 0's finetune read seed 1's main-phase shuffle; the committed
    # miniature rows were trained with it, and a stored recipe without this key is read as "additive".
    stream_seeds: Literal["keyed", "additive"] = "keyed"

    config_rules: ClassVar[tuple[Rule, ...]] = (at_least("shuffle_buffer", 0), at_least("workers", 0))

    def __post_init__(self) -> None:
        enforce_rules(self)


@dataclass(frozen=True)
class RecipeConfig:
    name: str
    description: str
    # Absent with `init`: the architecture is the checkpoint's (stated, it must agree with it).
    model: ArchitectureSpec | None = field(default=None, kw_only=True)
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
    # The text position table across stages of different text_length: "prefix" keeps the model's context_length
    # rows and a stage uses its first text_length (RECLIP); "resize" gives the table exactly the stage's text_length
    # rows, resampled linearly when a stage changes it (CLIPA, open_clip's resize_text_pos_embed), so the checkpoint's
    # context_length is the last stage's text_length.
    text_positions: Literal["prefix", "resize"] = "prefix"
    # SLIP's self-supervised branch (train/slip.py) in every stage: two SimCLR views per image (the `simclr`
    # augmentation preset), an MLP head, the SimCLR loss added to the CLIP loss. None: plain CLIP training.
    slip: SlipConfig | None = None
    # Start the first stage from a checkpoint's weights instead of the seed's random ones (train/init_from.py);
    # only at step 0: a resumed run continues from its resume point.
    init: InitConfig | None = None

    config_rules: ClassVar[tuple[Rule, ...]] = (
        at_least("log_every", 1), at_least("checkpoint_every", 0, " (0: off)"), at_least("keep_checkpoints", 1),
        Rule(("model", "init"), lambda m, i: None if m is not None or i is not None else
             "required key is missing (or init: a checkpoint whose architecture the run takes)"),
    )

    def __post_init__(self) -> None:
        enforce_rules(self)


# Stage keys whose value is one spec: a stage that states them replaces the previous stage's value whole (a merged
# `{kind: resize}` over `{kind: random, ratio: 0.5}` would be neither).
WHOLE_STAGE_KEYS = ("image_tokens", "text_tokens")


def merge_stage(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` deep-merged over `base`, except the WHOLE_STAGE_KEYS it states, which replace."""
    merged = deep_merge(base, {k: v for k, v in update.items() if k not in WHOLE_STAGE_KEYS})
    merged.update({k: update[k] for k in WHOLE_STAGE_KEYS if k in update})
    return merged


def upgrade_stage(stage: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    """A stage as written before `image_tokens` existed (`mask_ratio: r`) in today's terms; resume points and
    checkpoints keep the recipe as it was written, so old ones still resume and compare equal."""
    if "mask_ratio" not in stage:
        return stage
    if "image_tokens" in stage:
        raise ConfigError(source, [f"{where}.mask_ratio: replaced by image_tokens; state only image_tokens"])
    stage = dict(stage)
    stage["image_tokens"] = legacy_mask_ratio(stage.pop("mask_ratio"))
    return stage


def expand_augment_preset(stage: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    """A stage's `augment: NAME` (a preset) as the list of ops it stands for."""
    name = stage.get("augment")
    if not isinstance(name, str):
        return stage
    if name not in PRESETS:
        raise ConfigError(source, [f"{where}.augment: unknown preset {name!r}; expected a list of ops or one of "
                                   f"{', '.join(sorted(PRESETS))}"])
    return {**stage, "augment": describe_augment(PRESETS[name])}


def resolve_stages(stages: list[Any], source: str) -> list[dict[str, Any]]:
    """Stage i = stage i-1 merged with what stage i states (`merge_stage`)."""
    if not isinstance(stages, list) or not stages:
        raise ConfigError(source, ["stages: expected a non-empty list of stages"])
    resolved: list[dict[str, Any]] = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            raise ConfigError(source, [f"stages[{i}]: expected a mapping, got {stage!r}"])
        stage = expand_augment_preset(upgrade_stage(stage, f"stages[{i}]", source), f"stages[{i}]", source)
        resolved.append(merge_stage(resolved[-1], stage) if resolved else dict(stage))
    return resolved


def _merged_raw(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` (the file's mapping) merged over its `base:` recipe, if it names one."""
    raw = dict(raw)
    base_name = raw.pop("base", None)
    if base_name is None:
        return raw
    if not isinstance(base_name, str) or not base_name.strip():
        raise ConfigError(str(path), [f"base: expected the name or file of one recipe (text), got {base_name!r}"])
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
    return [merge_stage(upgrade_stage(s, f"stages.{s.get('name')}", str(path)),
                        upgrade_stage(patches.get(s.get("name"), {}), f"stages.{s.get('name')}", str(path)))
            for s in stages]


def is_detector_recipe(path: str | Path) -> bool:
    """Detector recipes (`training/detect-*.yaml`, run by `reclip-eval detect train`) have a `detector:` key."""
    return "detector" in load_yaml(path)


def clip_recipe_files() -> dict[str, Path]:
    """name -> path of the CLIP recipes under training/ (the detector recipes beside them left out)."""
    return {name: path for name, path in named_yaml_files("training").items() if not is_detector_recipe(path)}


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> RecipeConfig:
    """The resolved recipe; every problem (of the file, or of the `key=value` overrides, then named as the
    source) is reported at once, before any data or model is touched."""
    path = find_named_yaml("training", "recipe", name_or_path)
    raw = load_yaml(path)  # read once: the detector check and the parse share it
    if "detector" in raw:
        raise ConfigError(str(path), [f"detector: this is a detector recipe; run it with `reclip-eval detect train "
                                      f"--recipe {path.stem} --backbone MODEL --out DIR`"])
    return parse_with_overrides(lambda data: _parse(data, path), _merged_raw(path, raw), overrides or [], path)


def _parse(raw: dict[str, Any], path: Path) -> RecipeConfig:
    """The recipe, or one ConfigError with every problem: the schema's and those that need the model and all
    stages."""
    raw = {**raw, "stages": resolve_stages(raw.get("stages"), str(path))}
    if isinstance(raw.get("init"), str):  # `init: SPEC`, e.g. the override init=reclip-demo
        raw["init"] = {"model": raw["init"]}
    try:
        recipe, problems = from_dict(RecipeConfig, raw, source=str(path)), []
    except ConfigError as e:
        recipe, problems = None, e.problems
    problems += _cross_problems(raw)
    if problems:
        raise ConfigError(str(path), problems)
    return recipe


def _cross_problems(raw: dict[str, Any]) -> list[str]:
    """Rules across the model and the stages, checked on the raw values (so they are reported together with the
    schema's problems); a value of the wrong type was reported by the schema already."""
    stages = [s for s in raw["stages"] if isinstance(s, dict)]
    names = [s.get("name") for s in stages]
    problems = [f"stages: stage name {n!r} is used twice"
                for n in sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})]
    model = None
    try:
        spec = from_dict(ArchitectureSpec, raw.get("model"), source="model")
    except ConfigError:
        spec = None  # reported by the schema
    try:
        model = spec.build(source="model") if spec is not None else None
    except ConfigError as e:
        problems += [f"model: {p}" for p in e.problems]
    except UnknownNameError as e:
        problems.append(f"model.preset: {e}")
    if raw.get("slip") is not None:  # the head's BatchNorm normalises over the whole per-process batch
        problems += [f"stages.{s.get('name')}.micro_batch_size: SLIP's head normalises over the whole batch "
                     "(BatchNorm), which micro-batches would split; remove micro_batch_size"
                     for s in stages if s.get("micro_batch_size")]
    if model is not None:
        problems += model_stage_problems(model, stages, raw.get("text_positions"))
    return problems


def model_stage_problems(model: CLIPConfig, stages: list[dict[str, Any]], text_positions: Any) -> list[str]:
    """What in the (raw) `stages` does not fit `model`: image sizes off the patch grid, token reductions the grid
    cannot take, text lengths beyond its positions. Also for a model read from the recipe's `init` checkpoint
    (train/init_from.py), which is only known when the run starts."""
    problems = []
    for s in stages:
        size, length = s.get("image_size"), s.get("text_length")
        patch, context = model.vision.patch_size, model.text.context_length
        if _is_int(size) and size > 0 and size % patch:
            near = " or ".join(str(n) for n in sorted({size // patch * patch, (size // patch + 1) * patch} - {0}))
            problems.append(f"stages.{s.get('name')}.image_size: {size} is not a multiple of the model's patch size "
                            f"{patch} (e.g. {near})")
        tokens = s.get("image_tokens")
        if _is_int(size) and size > 0 and not size % patch and isinstance(tokens, dict):
            try:
                spec = from_dict(ImageTokens, tokens, source="image_tokens")
            except ConfigError:
                spec = None  # reported by the schema
            problem = spec.problem((size // patch,) * 2) if spec is not None else None
            if problem:
                problems.append(f"stages.{s.get('name')}.image_tokens: {problem}")
        if _is_int(length) and length > context and text_positions != "resize":
            problems.append(f"stages.{s.get('name')}.text_length: {length} exceeds the model's context_length "
                            f"{context} (or set text_positions: resize)")
        if _is_int(length) and length < 3 and isinstance(s.get("text_tokens"), dict) and \
                s["text_tokens"].get("kind", "truncate") != "truncate":
            problems.append(f"stages.{s.get('name')}.text_tokens: reduction keeps text_length - 2 caption tokens; "
                            f"text_length {length} leaves none")
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_recipe_yaml(text: str, source: str) -> RecipeConfig:
    """A resolved recipe as a checkpoint or resume point stored it (older layouts upgraded, as `load_recipe`)."""
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise ConfigError(source, ["expected a recipe mapping"])
    data = raw.get("data")
    if isinstance(data, dict) and "stream_seeds" not in data:
        # Stored before the key existed: the run drew its streams the additive way (issue 36), so it resumes so.
        raw = {**raw, "data": {**data, "stream_seeds": "additive"}}
    return _parse(raw, Path(source))


def recipe_to_yaml(recipe: RecipeConfig) -> str:
    """The fully resolved recipe (every stage complete), as saved in checkpoints and shown by `config show`."""
    return yaml.safe_dump(to_dict(recipe), sort_keys=False)


def written_by(stored: str | None, recipe: RecipeConfig, source: str) -> bool:
    """Whether `stored` (a resume point's recipe text) is `recipe`, an older layout upgraded first."""
    if stored is None:
        return False
    expected = recipe_to_yaml(recipe)
    if stored == expected:
        return True
    try:
        return recipe_to_yaml(parse_recipe_yaml(stored, source)) == expected
    except ConfigError:
        return False
