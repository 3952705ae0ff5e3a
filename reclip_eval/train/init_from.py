"""Training from a checkpoint: a recipe's `init:` (open_clip's --pretrained, big_vision's model_init).

`init` names any model `--model` loads (reclip_eval.kinds.load_adapter) whose architecture the trainers hold:
    our checkpoints        a run folder, a named model with weights (reclip-demo), hf-hub: folders of ours
    big_vision / CLIPA     big_vision:PATH.npz (imported into our model by zoo/big_vision.py)
    open_clip ViT CLIPs    openclip:ARCH with checkpoint FILE.safetensors or pretrained TAG, open_clip folders:
                           converted here into our model, tensor by tensor, then checked to embed as open_clip does
Anything else (a transformers model, an open_clip model with parts our CLIP has no place for, another tokenizer) is
refused in one line naming what. The model's architecture is the checkpoint's: a recipe `model:` beside `init`
must agree with it (the keys that differ are named). The weights enter at the checkpoint's own grid and go to the
first stage's image size through the one resampler (checkpoint.load_state_into -> models/pos_embed.py), logged.
The spec and the sha256 of its weights file are recorded in training.json and the card. Both trainers build their
model here (train/stage_setup.py `build_model`); a resumed run takes its resume point's weights instead, and the
init's fingerprint is compared with the one the run started from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from reclip_eval.config import Rule, enforce_rules, to_dict
from reclip_eval.errors import CheckpointError, ConfigError
from reclip_eval.models.config import CLIPConfig, PreprocessConfig, TextConfig, VisionConfig
from reclip_eval.models.presets import with_image_size

if TYPE_CHECKING:
    import torch

    from reclip_eval.models.clip import CLIP
    from reclip_eval.train.recipe import RecipeConfig

log = logging.getLogger(__name__)
# Our model and open_clip's, on one random image and caption, must give these embeddings within this (unit vectors).
CONVERSION_TOLERANCE = 1e-4


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


def load_init(init: InitConfig) -> InitWeights:
    """The weights `init` names, in our model's terms, or a one-line CheckpointError naming what cannot be held."""
    from reclip_eval.kinds import load_adapter
    from reclip_eval.zoo.openclip import OpenClipAdapter
    from reclip_eval.zoo.reclip import ReclipAdapter

    # model_config only when given: the kinds that take none refuse it by name
    extra = {"model_config": init.model_config} if init.model_config else {}
    adapter = load_adapter(init.model, checkpoint=init.checkpoint, pretrained=init.pretrained, **extra)
    if isinstance(adapter, ReclipAdapter):  # ours, and big_vision / CLIPA trees imported into our model
        config, state = adapter.model.config, dict(adapter.model.state_dict())
    elif isinstance(adapter, OpenClipAdapter):
        config, state = convert_open_clip(adapter, init)
    else:
        described = adapter.describe()
        what = " ".join(str(described[k]) for k in ("family", "architecture") if described.get(k))
        raise init_error(init, f"a {what or type(adapter).__name__} model, which the trainers cannot hold (they start "
                               "from our checkpoints, open_clip ViT CLIPs and big_vision / CLIPA trees)")
    if config.text.tokenizer != "clip-bpe":
        raise init_error(init, f"its text tower reads {config.text.tokenizer} tokens; the trainers tokenise captions "
                               "with CLIP's BPE only")
    described = adapter.describe()
    record = {"model": init.model, "checkpoint": init.checkpoint, "pretrained": init.pretrained,
              "model_config": init.model_config, "family": described.get("family"), "sha256": adapter.sha256}
    record.update({k: described["weights"][k] for k in ("path", "hub_repo", "hub_commit")
                   if described.get("weights", {}).get(k)})
    if adapter.sha256 is None:
        raise init_error(init, "no weights file to fingerprint (random initialisation is the recipe's own seed)")
    return InitWeights(config, {k: v.detach().cpu() for k, v in state.items()}, record)


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


# --- open_clip -> our model ---------------------------------------------------------------------------------------

_BLOCK = {"ln_1": "norm1", "ln_2": "norm2", "attn.in_proj_weight": "attn.qkv.weight",
          "attn.in_proj_bias": "attn.qkv.bias", "attn.out_proj.weight": "attn.proj.weight",
          "attn.out_proj.bias": "attn.proj.bias", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
_TOP = {"visual.conv1.weight": "visual.patch_embed.weight", "visual.ln_pre": "visual.norm_pre",
        "visual.ln_post": "visual.norm", "token_embedding.weight": "text.token_embed.weight",
        "ln_final": "text.norm", "logit_scale": "logit_scale"}


def _our_name(key: str) -> str | None:
    """Our tensor name for open_clip's `key` (the projections and tables are reshaped by `_our_tensor`)."""
    for tower, ours in (("visual.transformer.resblocks.", "visual.transformer.blocks."),
                        ("transformer.resblocks.", "text.transformer.blocks.")):
        if key.startswith(tower):
            index, rest = key[len(tower):].split(".", 1)
            for theirs, mine in _BLOCK.items():
                if rest == theirs or rest.startswith(theirs + "."):
                    return f"{ours}{index}.{mine}{rest[len(theirs):]}"
            return None
    special = {"visual.class_embedding": "visual.cls_token", "visual.positional_embedding": "visual.pos_embed",
               "visual.proj": "visual.proj.weight", "positional_embedding": "text.pos_embed",
               "text_projection": "text.proj.weight", "text_projection.weight": "text.proj.weight",
               "text_projection.bias": "text.proj.bias"}
    if key in special:
        return special[key]
    for theirs, mine in _TOP.items():
        if key == theirs or key.startswith(theirs + "."):
            return mine + key[len(theirs):]
    return None


def _our_tensor(key: str, tensor: torch.Tensor) -> torch.Tensor:
    if key == "visual.class_embedding":
        return tensor.reshape(1, 1, -1)
    if key in ("visual.positional_embedding", "positional_embedding"):
        return tensor.unsqueeze(0)
    if key in ("visual.proj", "text_projection"):  # open_clip multiplies x @ proj: a Linear's weight transposed
        return tensor.t()
    return tensor


def _activation(act: Any, what: str, init: InitConfig) -> str:
    import torch

    if type(act) is torch.nn.GELU:
        return "gelu" if act.approximate == "none" else "gelu_tanh"
    raise init_error(init, f"{what} activation is {type(act).__name__} (e.g. quick_gelu); the trainers' model has "
                           "GELU only")


def _open_clip_config(model: Any, init: InitConfig) -> CLIPConfig:
    """Our config for open_clip `model`, or the refusal naming the first part our CLIP has no place for."""
    import torch
    from open_clip.model import CLIP as OpenClipCLIP
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    visual = model.visual
    if type(model) is not OpenClipCLIP:
        raise init_error(init, f"an open_clip {type(model).__name__}; only its CLIP class (built-in text tower) maps "
                               "onto the trainers' model")
    if not isinstance(visual, VisionTransformer):
        raise init_error(init, f"an open_clip {type(visual).__name__} image tower; the trainers' model is a ViT")
    blocks = list(visual.transformer.resblocks) + list(model.transformer.resblocks)
    refusals = [
        (getattr(model, "logit_bias", None) is not None, "a logit bias (SigLIP's sigmoid loss)"),
        (getattr(visual, "attn_pool", None) is not None, "attentional pooling"),
        (getattr(visual, "pool_type", "tok") != "tok", f"image pool_type {getattr(visual, 'pool_type', None)!r}"),
        (getattr(visual, "final_ln_after_pool", False), "final_ln_after_pool"),
        (not visual.positional_embedding.requires_grad, "a fixed sin-cos position table"),
        (model.attn_mask is None, "a text tower without causal mask"),
        (model.text_pool_type != "argmax", f"text pool_type {model.text_pool_type!r}"),
        (any(type(b) is not ResidualAttentionBlock for b in blocks), "custom attention blocks"),
        (any(not isinstance(b.ls_1, torch.nn.Identity) for b in blocks), "layer scale"),
    ]
    for refused, what in refusals:
        if refused:
            raise init_error(init, f"open_clip {what}: not in the trainers' model")
    norms = [m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    projection = model.text_projection
    vblock, tblock = visual.transformer.resblocks[0], model.transformer.resblocks[0]
    height, width = visual.image_size if isinstance(visual.image_size, (tuple, list)) else (visual.image_size,) * 2
    preprocess = getattr(visual, "preprocess_cfg", {}) or {}
    resize = {"shortest": "shortest", "squash": "squash"}.get(preprocess.get("resize_mode", "shortest"))
    interpolation = preprocess.get("interpolation", "bicubic")
    if resize is None or interpolation not in ("bicubic", "bilinear"):
        raise init_error(init, f"open_clip preprocessing {preprocess}: resize_mode shortest or squash and bicubic or "
                               "bilinear interpolation only")
    vision = VisionConfig(
        image_size=height if height == width else (height, width), patch_size=visual.patch_size[0],
        width=visual.conv1.out_channels, layers=len(visual.transformer.resblocks),
        heads=vblock.attn.num_heads, mlp_ratio=vblock.mlp.c_fc.out_features / vblock.mlp.c_fc.in_features,
        pool="cls", ln_pre=not isinstance(visual.ln_pre, torch.nn.Identity), patch_bias=visual.conv1.bias is not None,
        activation=_activation(vblock.mlp.gelu, "image tower", init), layer_norm_eps=norms[0])
    text = TextConfig(
        context_length=model.positional_embedding.shape[0], vocab_size=model.token_embedding.num_embeddings,
        width=model.token_embedding.embedding_dim, layers=len(model.transformer.resblocks),
        heads=tblock.attn.num_heads, mlp_ratio=tblock.mlp.c_fc.out_features / tblock.mlp.c_fc.in_features,
        pool="eot", head_bias=isinstance(projection, torch.nn.Linear) and projection.bias is not None,
        activation=_activation(tblock.mlp.gelu, "text tower", init), layer_norm_eps=norms[0])
    if len(set(norms)) > 1:
        raise init_error(init, f"open_clip LayerNorms with several eps {sorted(set(norms))}: one per model only")
    mean, std = preprocess.get("mean"), preprocess.get("std")
    return CLIPConfig(
        embed_dim=visual.output_dim, vision=vision, text=text,
        preprocess=PreprocessConfig(**({"mean": tuple(mean)} if mean else {}), **({"std": tuple(std)} if std else {}),
                                    interpolation=interpolation, resize=resize))


def convert_open_clip(adapter: Any, init: InitConfig) -> tuple[CLIPConfig, dict[str, torch.Tensor]]:
    """open_clip's CLIP (loaded by the open_clip adapter from safetensors) as our config and tensors; checked to
    give open_clip's own embeddings on a random image and caption."""
    from open_clip.tokenizer import SimpleTokenizer

    if not isinstance(adapter.tokenizer, SimpleTokenizer):
        raise init_error(init, f"open_clip tokenizer {type(adapter.tokenizer).__name__}; the trainers tokenise "
                               "captions with CLIP's BPE only")
    model = adapter.model
    config = _open_clip_config(model, init)
    state, unplaced = {}, []
    for key, tensor in model.state_dict().items():
        ours = _our_name(key)
        if ours is None:
            unplaced.append(key)
        else:
            state[ours] = _our_tensor(key, tensor.detach().float())
    if unplaced:
        raise init_error(init, f"open_clip tensors with no place in the trainers' model: {', '.join(unplaced[:4])}")
    _check_conversion(model, config, state, init)
    return config, state


def _check_conversion(model: Any, config: CLIPConfig, state: dict[str, torch.Tensor], init: InitConfig) -> None:
    """Our model holding the converted tensors embeds one random image and caption as open_clip does; anything the
    checks above missed shows here, before a run trains on a model that is not the checkpoint."""
    import torch

    from reclip_eval.checkpoint import load_state_into
    from reclip_eval.models.clip import CLIP

    with torch.device("meta"):
        ours = CLIP(config)
    try:
        load_state_into(ours, dict(state), config, source=f"init {init.model}", assign=True)
    except CheckpointError as e:
        raise init_error(init, f"open_clip tensors do not fit the trainers' model: {e}".replace("\n", " ")) from None
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(1, 3, *config.vision.image_hw, generator=generator)
    tokens = torch.zeros(1, config.text.context_length, dtype=torch.long)
    tokens[0, :5] = torch.tensor([config.text.vocab_size - 2, 320, 1125, 539, config.text.vocab_size - 1])
    with torch.no_grad():
        was_training = model.training
        model.eval()
        theirs = (model.encode_image(pixels, normalize=True), model.encode_text(tokens, normalize=True))
        model.train(was_training)
        mine = (ours.eval().encode_image(pixels), ours.encode_text(tokens))
    worst = max(float((a.float() - b.float()).abs().max()) for a, b in zip(theirs, mine, strict=True))
    if worst > CONVERSION_TOLERANCE:
        raise init_error(init, f"our model holding its tensors embeds {worst:.2g} away from open_clip's own forward "
                               "(an architecture option the trainers' model lacks)")


def run_record(weights: InitWeights | None) -> dict[str, Any] | None:
    """What training.json and the resume settings record of the init (None: the recipe's seed)."""
    return None if weights is None else dict(weights.record)



def prepare_init(recipe: RecipeConfig) -> InitWeights | None:
    """The recipe's init weights, checked against its `model:` and stages (None without `init`): before the run
    folder or any data is touched."""
    if recipe.init is None:
        return None
    weights = load_init(recipe.init)
    check_recipe_model(recipe, weights)
    log.info("init: %s (%s, sha256 %s)", recipe.init.model, weights.record["family"], weights.record["sha256"])
    return weights


def init_settings(settings: dict[str, Any], weights: InitWeights | None) -> dict[str, Any]:
    """The resume settings with the init's fingerprint: a resumed run is refused when its init's weights changed
    (train/resume.py `settings_mismatches`)."""
    if weights is None:
        return settings
    return {**settings, "init": {"model": weights.record["model"], "sha256": weights.record["sha256"]}}
