"""Loading a recipe's `init:` checkpoint for the trainers (train/init_from.py): any spec `--model` loads whose
architecture the trainers hold, as our config and tensors. Ours and big_vision / CLIPA trees are already our model;
open_clip ViT CLIPs are converted here tensor by tensor and checked to embed as open_clip's own forward does. It
lives in the zoo, above the trainers, because it loads through the zoo's resolver; the CLI (`reclip-eval train`)
calls it and hands the weights to `train(..., init=)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reclip_eval.errors import CheckpointError
from reclip_eval.models.config import CLIPConfig, PreprocessConfig, TextConfig, VisionConfig
from reclip_eval.train.init_from import InitConfig, InitWeights, init_error

if TYPE_CHECKING:
    import torch

# Our model and open_clip's, on one random image and caption, must give these embeddings within this (unit vectors).
CONVERSION_TOLERANCE = 1e-4


def load_init(init: InitConfig) -> InitWeights:
    """The weights `init` names, in our model's terms, or a one-line CheckpointError naming what cannot be held."""
    from reclip_eval.zoo.openclip import OpenClipAdapter
    from reclip_eval.zoo.reclip import ReclipAdapter
    from reclip_eval.zoo.resolve import load_adapter

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


