"""What both trainers (train/loop.py, jax_train/trainer.py) check and set up before a run's first step and at the
start of each stage: the model at the stage's shape (image size, text length), the batch split, the param rules,
and the stage's caption tokens (the data workers' tokenizer, the per-step draws of random / block reduction).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from reclip_eval.data.augment import PRESETS, StackedViews, train_image_transform
from reclip_eval.data.syntax_tags import load_tagger, resolve_tagger
from reclip_eval.data.transforms import image_transform
from reclip_eval.distributed import rank_and_size
from reclip_eval.errors import ReclipError
from reclip_eval.models.clip import CLIP
from reclip_eval.models.config import PreprocessConfig
from reclip_eval.models.presets import with_image_size
from reclip_eval.models.text_reduction import TEXT_DRAWS_TAG, encode_captions, select_text_tokens
from reclip_eval.models.token_reduction import derive_seed, step_generator
from reclip_eval.models.tokenizer import ClipTokenizer
from reclip_eval.train.init_from import InitWeights, model_from_init
from reclip_eval.train.param_rules import match_rules
from reclip_eval.train.recipe import RecipeConfig, StageConfig
from reclip_eval.train.slip import attach_slip_head


class TrainingError(ReclipError):
    """Training cannot go on (e.g. the loss became NaN/inf)."""


STREAM_TAG = 3_141_592  # keeps the data streams' seeds apart from other draws keyed by the same (seed, stage, rank)


def stream_seed(recipe: RecipeConfig, stage_index: int, rank: int = 0) -> int:
    """The seed of stage `stage_index`'s data stream on process `rank` (both trainers draw the same stream)."""
    if recipe.data.stream_seeds == "additive":
        return recipe.seed + stage_index + 10_000 * rank
    return derive_seed(STREAM_TAG, recipe.seed, stage_index, rank)


def build_model(recipe: RecipeConfig, init: InitWeights | None = None) -> CLIP:
    """The recipe's model at its first stage's image size (and text length, with `text_positions: resize`): seeded,
    or holding the weights of the recipe's `init` checkpoint (train/init_from.py: `prepare_init`)."""
    if (init is None) != (recipe.init is None):
        raise TrainingError(f"recipe {recipe.name}: init {'weights not loaded' if init is None else 'not in it'}")
    if init is not None:
        model = model_from_init(recipe, init)
        torch.manual_seed(recipe.seed)  # a SLIP head is still drawn from the seed
        if recipe.slip is not None:
            attach_slip_head(model, recipe.slip)
        return model
    config = with_image_size(recipe.model.build(source=f"recipe {recipe.name}"), recipe.stages[0].image_size)
    if recipe.text_positions == "resize":
        config = dataclasses.replace(config, text=dataclasses.replace(
            config.text, context_length=recipe.stages[0].text_length))
    torch.manual_seed(recipe.seed)
    model = CLIP(config)
    if recipe.slip is not None:  # drawn after the model's weights: a SLIP run's dual encoder starts as CLIP's
        attach_slip_head(model, recipe.slip)
    return model


def shape_for_stage(model: CLIP, recipe: RecipeConfig, stage: StageConfig) -> str | None:
    """Bring `model` to `stage`'s image size (resampling the position grid, logged, only on a new size) and, with
    `text_positions: resize`, its text length; returns the text table's resize, None when it did not change."""
    model.set_image_size(stage.image_size)
    return model.set_text_length(stage.text_length) if recipe.text_positions == "resize" else None


def rules_source(recipe: RecipeConfig, stage: StageConfig) -> str:
    return f"recipe {recipe.name}: stages.{stage.name}.optimizer"


def check_param_rules(model: CLIP, recipe: RecipeConfig) -> None:
    """Every stage's param rules cover every trainable parameter (names do not depend on the image size), checked
    before the first step rather than at the start of a later stage."""
    for stage in recipe.stages:
        match_rules(model.named_parameters(), stage.optimizer.param_rules, rules_source(recipe, stage))


def _batch_problems(stage: StageConfig, world: int) -> list[str]:
    """How `stage`'s batch does not split over `world` processes. (A per-process batch of one is fine: the loss
    runs over the gathered global batch, which the recipe schema keeps at two pairs or more.)"""
    if stage.batch_size % world:
        return [f"stage {stage.name!r}: batch_size {stage.batch_size} is the global batch and must be divisible by "
                f"the {world} processes"]
    local_batch = stage.batch_size // world
    if stage.micro_batch_size and local_batch % stage.micro_batch_size:
        return [f"stage {stage.name!r}: micro_batch_size {stage.micro_batch_size} must divide the per-process batch "
                f"{local_batch} (batch_size {stage.batch_size} / {world} processes)"]
    return []


def check_batches(stages: list[StageConfig]) -> None:
    problems = [p for stage in stages for p in _batch_problems(stage, rank_and_size()[1])]
    if problems:
        raise TrainingError("; ".join(problems))


def check_slip(recipe: RecipeConfig, device: str) -> None:
    """SLIP's head synchronises its BatchNorm across processes (torch's SyncBatchNorm, as SLIP's code), which runs
    on GPUs only: refused before the run starts rather than at the first step."""
    if recipe.slip is not None and rank_and_size()[1] > 1 and not device.startswith("cuda"):
        raise TrainingError(f"recipe {recipe.name}: slip under torchrun needs CUDA devices (its head's "
                            f"SyncBatchNorm runs on GPUs only), got {device}; train it in one process")


def stage_transform(stage: StageConfig, preprocess: PreprocessConfig, slip: bool = False) -> Callable:
    """The stage's image transform for the training stream: evaluation's (no augmentation listed), the stage's
    augmentation (`transform(image, seed)`), or with SLIP that image and two SimCLR views stacked (3, C, H, W)."""
    if slip:
        return StackedViews(train_image_transform(stage.image_size, preprocess, stage.augment),
                            train_image_transform(stage.image_size, preprocess, PRESETS["simclr"]))
    if stage.augment:
        return train_image_transform(stage.image_size, preprocess, stage.augment)
    return image_transform(stage.image_size, preprocess)


def stage_taggers(recipe: RecipeConfig) -> dict[str, str]:
    """stage name -> the part-of-speech tagger its syntax reduction uses, for every such stage: resolved (and
    loaded once) before any data is read, so a missing tagger stops the run at its start, not at a later stage."""
    return {s.name: resolve_tagger(s.text_tokens.tagger) for s in recipe.stages if s.text_tokens.kind == "syntax"}


@dataclasses.dataclass(frozen=True)
class CaptionEncoder:
    """The data workers' tokenizer for one stage (picklable: spawned workers get a copy): captions -> (B, S) ids,
    syntax-reduced or at the length `TextDraws` reduces from (models/text_reduction.py)."""

    stage: StageConfig
    tagger: str | None = None

    def __call__(self, texts: list[str]) -> torch.Tensor:
        spec, length = self.stage.text_tokens, self.stage.text_length
        tag = load_tagger(self.tagger) if spec.kind == "syntax" else None
        return encode_captions(texts, spec, length, ClipTokenizer(spec.source_length(length)), tag)


@dataclasses.dataclass(frozen=True)
class TextDraws:
    """Random / block text reduction of batch `step`, drawn with the generator of (tag, seed, stage, step, rank):
    the same tokens after any resume and on any number of data workers."""

    stage: StageConfig
    seed: int
    stage_index: int
    rank: int

    def __call__(self, tokens: torch.Tensor, step: int) -> torch.Tensor:
        generator = step_generator(tokens.device, TEXT_DRAWS_TAG, self.seed, self.stage_index, step, self.rank)
        return select_text_tokens(tokens, self.stage.text_tokens, self.stage.text_length, generator)


def caption_tokens(recipe: RecipeConfig, index: int, rank: int, tagger: str | None
                   ) -> tuple[CaptionEncoder, Callable[[torch.Tensor, int], torch.Tensor] | None]:
    """Stage `index`'s (worker tokenizer, per-step reduction or None) for process `rank`."""
    stage = recipe.stages[index]
    draws = TextDraws(stage, recipe.seed, index, rank) if stage.text_tokens.draws else None
    return CaptionEncoder(stage, tagger), draws
