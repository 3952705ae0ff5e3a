"""Training from a checkpoint: a recipe's `init:` (open_clip's --pretrained, big_vision's model_init).

`init` names any model `--model` loads (zoo/resolve.py load_adapter) whose architecture the trainers hold:
    our checkpoints        a run folder, a named model with weights (reclip-demo), hf-hub: folders of ours
    big_vision / CLIPA     big_vision:PATH.npz (imported into our model by zoo/big_vision.py)
    open_clip ViT CLIPs    openclip:ARCH with checkpoint FILE.safetensors or pretrained TAG, open_clip folders:
                           converted into our model, tensor by tensor (zoo/init_weights.py), then checked to
                           embed as open_clip does
Anything else (a transformers model, an open_clip model with parts our CLIP has no place for, another tokenizer) is
refused in one line naming what. The model's architecture is the checkpoint's: a recipe `model:` beside `init`
must agree with it (the keys that differ are named). The weights enter at the checkpoint's own grid and go to the
first stage's image size through the one resampler (checkpoint.load_state_into -> models/pos_embed.py), logged.
The spec and the sha256 of its weights file are recorded in training.json and the card. The weights are loaded by
zoo/init_weights.py `load_init` (the zoo sits above the trainers) and handed to `train(..., init=)`; both trainers
check them here and build their model from them (train/stage_setup.py `build_model`); a resumed run takes its resume point's weights instead, and the
init's fingerprint is compared with the one the run started from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from reclip_eval.config import Rule, enforce_rules, to_dict
from reclip_eval.errors import CheckpointError, ConfigError
from reclip_eval.models.config import CLIPConfig
from reclip_eval.models.presets import with_image_size

if TYPE_CHECKING:
    import torch

    from reclip_eval.models.clip import CLIP
    from reclip_eval.train.recipe import RecipeConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitConfig:
    """The checkpoint a recipe's first stage starts from: any spec `--model` loads whose
    architecture the trainers hold (ours, open_clip ViTs, big_vision / CLIPA trees), with the weights that spec's
    --checkpoint / --pretrained would take. `init: SPEC` in a recipe is short for `init: {model: SPEC}`."""

    model: str
    checkpoint: str | None = None  # `openclip:ARCH` with a .safetensors file
    pretrained: str | None = None  # `openclip:ARCH` with one of open_clip's pretrained tags (Hugging Face cache)
    model_config: str | None = None  # `big_vision:PATH.npz` with big_vision's model config (JSON / YAML file)

    config_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(("model",), lambda m: None if m.strip() else "expected a model spec (a run folder, a named model, "
             "openclip:ARCH, big_vision:PATH.npz, ...)"),
        Rule(("checkpoint", "pretrained"), lambda c, p: None if not (c and p) else "checkpoint and pretrained "
             "contradict; give one"),
    )

    def __post_init__(self) -> None:
        enforce_rules(self)


@dataclass(frozen=True)
class InitWeights:
    """A checkpoint's architecture (at its own image size), its tensors under our model's names, and its record."""

    config: CLIPConfig
    state: dict[str, torch.Tensor]
    record: dict[str, Any]  # spec, checkpoint / pretrained, kind, sha256: training.json's `init`


def init_error(init: InitConfig, why: str) -> CheckpointError:
    return CheckpointError(f"init {init.model}: {why}")


def check_recipe_model(recipe: RecipeConfig, weights: InitWeights) -> None:
    """A recipe's `model:` beside `init` states the checkpoint's architecture (image size aside: the stages set it);
    then the stages must fit it. Each difference is named."""
    from reclip_eval.train.recipe import model_stage_problems

    source = f"recipe {recipe.name}"
    problems = []
    if recipe.model is not None:
        stated = with_image_size(recipe.model.build(source=source), weights.config.vision.image_size)
        problems = [f"model.{key}: the recipe says {ours!r}, init {recipe.init.model} has {theirs!r}"
                    for key, ours, theirs in _differences(to_dict(stated), to_dict(weights.config))]
    problems += model_stage_problems(weights.config, [to_dict(s) for s in recipe.stages], recipe.text_positions)
    if problems:
        raise ConfigError(source, problems)


def _differences(ours: Any, theirs: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [d for k in ours for d in _differences(ours[k], theirs.get(k), f"{key}.{k}" if key else k)]
    return [] if ours == theirs else [(key, ours, theirs)]


def model_from_init(recipe: RecipeConfig, weights: InitWeights) -> CLIP:
    """Our model with the checkpoint's weights at the first stage's image size (the position grid resampled by the
    one resampler, logged) and, with `text_positions: resize`, its text length."""
    import torch

    from reclip_eval.checkpoint import load_state_into
    from reclip_eval.models.clip import CLIP

    first = recipe.stages[0]
    with torch.device("meta"):
        model = CLIP(with_image_size(weights.config, first.image_size))
    load_state_into(model, weights.state, weights.config, source=f"init {recipe.init.model}", assign=True)
    if recipe.text_positions == "resize":
        model.set_text_length(first.text_length)
    return model.train()


def run_record(weights: InitWeights | None) -> dict[str, Any] | None:
    """What training.json and the resume settings record of the init (None: the recipe's seed)."""
    return None if weights is None else dict(weights.record)



def prepare_init(recipe: RecipeConfig, weights: InitWeights | None) -> InitWeights | None:
    """The recipe's init weights (loaded by the caller with zoo/init_weights.py `load_init`: the zoo sits above the
    trainers), checked against its `model:` and stages (None without `init`): before the run folder or any data is
    touched."""
    source = f"recipe {recipe.name}"
    if recipe.init is None:
        if weights is not None:
            raise ConfigError(source, [f"init: weights of {weights.record['model']} were given, but the recipe names "
                                       "no init"])
        return None
    if weights is None:
        raise ConfigError(source, [f"init: {recipe.init.model}: its weights are loaded first: "
                                   "train(..., init=reclip_eval.zoo.init_weights.load_init(recipe.init)) "
                                   "(reclip-eval train does this)"])
    if weights.record.get("model") != recipe.init.model:
        raise ConfigError(source, [f"init: the recipe names {recipe.init.model}, the weights given are "
                                   f"{weights.record.get('model')}"])
    check_recipe_model(recipe, weights)
    log.info("init: %s (%s, sha256 %s)", recipe.init.model, weights.record["family"], weights.record["sha256"])
    return weights


def init_settings(settings: dict[str, Any], weights: InitWeights | None) -> dict[str, Any]:
    """The resume settings with the init's fingerprint: a resumed run is refused when its init's weights changed
    (train/resume.py `settings_mismatches`)."""
    if weights is None:
        return settings
    return {**settings, "init": {"model": weights.record["model"], "sha256": weights.record["sha256"]}}
