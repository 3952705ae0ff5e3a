"""Adapter for open_clip models: `--model openclip:ARCH --checkpoint weights.safetensors` (any open_clip
architecture), `--model openclip:ARCH --pretrained TAG` (open_clip's own pretrained tags, their Hub repos read through
the Hugging Face cache), or an open_clip checkpoint folder / Hub repo (`open_clip_config.json` + safetensors weights).

Weights are read from safetensors only, by our reader (open_clip's own loader would also accept pickles). At
another image size the model is built at that size and the position table resampled by us (zoo/foreign_size.py).
Without weights the model is random: refused unless asked for (`random_init`), and then marked in its id and
in `weights.random_init` of the results.

Also the `open_clip` model kind: a folder holding open_clip_config.json, and the `openclip:ARCH` prefix form.
"""

from __future__ import annotations

import importlib.util
import logging
import posixpath
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reclip_eval.errors import CheckpointError
from reclip_eval.hub import CheckpointSource, download_snapshot
from reclip_eval.zoo.model_kinds import LoadRequest, ModelFolder, PrefixForm, register_model_kind
from reclip_eval.zoo.torch_adapter import TorchAdapter

if TYPE_CHECKING:
    import torch

OPENCLIP_CONFIG = "open_clip_config.json"
OPENCLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "model.safetensors")
POS_EMBED_KEY = "visual.positional_embedding"
RANDOM_INIT_TAG = "+random-init"
PREFIX = "openclip:"
PRETRAINED_SEPARATOR = "/"  # openclip:ARCH/TAG: the model id of --pretrained TAG (open_clip's own "ARCH/TAG" form)


def is_architecture_name(name: str) -> bool:
    """Whether `name` is one of open_clip's built-in architectures (a JSON in its model_configs/), found without
    importing open_clip (and torch): only an error message asks."""
    spec = importlib.util.find_spec("open_clip")
    folders = spec.submodule_search_locations if spec is not None else None
    return bool(folders) and "/" not in name and any((Path(f) / "model_configs" / f"{name}.json").is_file()
                                                     for f in folders)


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Checkpoints saved from DDP training carry a "module." prefix.
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


class OpenClipAdapter(TorchAdapter):
    def __init__(self, model, preprocess, tokenizer, model_id: str, arch: str, weights: Path | None,
                 source: dict[str, Any] | None = None, resampled_from: int | None = None):
        from reclip_eval.checkpoint import file_sha256
        from reclip_eval.zoo.foreign_size import describe_resample

        self.model = model.eval()
        self.transform = preprocess
        self.tokenizer = tokenizer
        self.random_init = weights is None
        self.model_id = model_id + RANDOM_INIT_TAG if self.random_init else model_id
        self.arch = arch
        self.weights = weights
        self.sha256 = file_sha256(weights) if weights else None
        self.source = source or {}
        self.image_size = _image_size(model)
        self.resample = describe_resample(resampled_from or self.image_size, self.image_size)

    @classmethod
    def from_arch(cls, arch: str, weights: str | None, model_id: str, *, image_size: int | None = None,
                  random_init: bool = False, pretrained: str | None = None) -> OpenClipAdapter:
        """Everything the user gave is checked before the model is built: the architecture, that exactly one of
        --checkpoint, --pretrained and --random-init is given, and that the weights file or the tag's Hub weights
        are there."""
        import open_clip

        if arch not in open_clip.list_models():
            from reclip_eval.registry import unknown_name

            raise unknown_name("open_clip architecture", arch, open_clip.list_models())
        given = [f"--{flag} {value}" if value is not True else f"--{flag}" for flag, value in
                 (("checkpoint", weights), ("pretrained", pretrained), ("random-init", random_init)) if value]
        if len(given) > 1:
            raise CheckpointError(f"{model_id}: {' and '.join(given)} contradict; give one")
        if not given:
            raise CheckpointError(f"{model_id}: no weights given; pass --pretrained TAG (open_clip's tags for "
                                  f"{arch}: {', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'}), "
                                  "--checkpoint FILE.safetensors, or --random-init to evaluate a randomly initialised "
                                  "model on purpose")
        tag_cfg, source = {}, {}
        if pretrained:
            tag_cfg, path, hub = _pretrained_weights(arch, pretrained, model_id)
            source = {"pretrained_tag": pretrained, "hub_repo": hub.repo_id, "hub_revision": hub.revision,
                      "hub_commit": hub.commit}
            model_id = f"{model_id}{PRETRAINED_SEPARATOR}{pretrained}"
        else:
            path = _existing_weights_file(weights, arch, model_id) if weights else None
        model_cfg = open_clip.get_model_config(arch)
        _check_size_fits(model_cfg, image_size, model_id)
        # The tag's preprocessing and activation, as open_clip applies them when it loads the tag itself.
        with _quiet_random_init(path is not None):
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=None, force_image_size=image_size, force_quick_gelu=bool(tag_cfg.get("quick_gelu")),
                image_mean=tag_cfg.get("mean"), image_std=tag_cfg.get("std"),
                image_interpolation=tag_cfg.get("interpolation"), image_resize_mode=tag_cfg.get("resize_mode"))
        _check_resizable(model, image_size, model_id)
        if path is not None:
            _load_weights(model, path, f"open_clip {arch}")
        return cls(model, preprocess, open_clip.get_tokenizer(arch), model_id, arch, path, source,
                   resampled_from=_native_size(model_cfg) if image_size and path else None)

    @classmethod
    def from_dir(cls, folder: Path, model_id: str, source: dict[str, Any] | None = None, *,
                 image_size: int | None = None) -> OpenClipAdapter:
        import open_clip

        from reclip_eval.errors import read_json

        weights = next((folder / name for name in OPENCLIP_WEIGHTS if (folder / name).is_file()), None)
        if weights is None:
            raise CheckpointError(f"{folder}: no safetensors weights ({', '.join(OPENCLIP_WEIGHTS)}); pickled "
                                  "weights are never loaded")
        model_cfg = read_json(folder / OPENCLIP_CONFIG, CheckpointError).get("model_cfg", {})
        _check_size_fits(model_cfg, image_size, model_id)
        spec = f"local-dir:{folder}"
        # load_weights=False: the weights go through our safetensors reader (and resampler), not open_clip's.
        model, _, preprocess = open_clip.create_model_and_transforms(spec, load_weights=False,
                                                                     force_image_size=image_size)
        _check_resizable(model, image_size, model_id)
        _load_weights(model, weights, spec)
        return cls(model, preprocess, open_clip.get_tokenizer(spec), model_id, spec, weights, source,
                   resampled_from=_native_size(model_cfg) if image_size else None)

    def placed_modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels, normalize=True)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.decisive_text_length(tokens) is not None and tokens.shape[1] < len(self.model.positional_embedding):
            return _encode_text_prefix(self.model, tokens)
        return self.model.encode_text(tokens, normalize=True)

    def decisive_text_length(self, tokens: torch.Tensor) -> int | None:
        """open_clip's CLIP text tower when causal (an attention mask) and pooled at one token: the position of
        that token (argmax, or the first eos) bounds what decides the embedding. Any other tower: None."""
        from open_clip.model import CLIP

        from reclip_eval.models.text import prefix_through

        model = self.model
        if type(model) is not CLIP or model.attn_mask is None:
            return None
        if model.text_pool_type == "argmax":
            return prefix_through(tokens.argmax(dim=-1))
        eos = getattr(model, "text_eos_id", None)
        if model.text_pool_type == "eos" and eos is not None:
            return prefix_through((tokens == eos).int().argmax(dim=-1))
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "family": "open_clip",
            "architecture": self.arch,
            "weights": {"sha256": self.sha256, "path": str(self.weights) if self.weights else None,
                        "random_init": self.random_init, **self.source},
            "image_size": self.image_size,
            "pos_embed_resample": self.resample,
            "preprocess": {"transform": repr(self.transform)},
            "tokenizer": {"name": type(self.tokenizer).__name__,
                          "context_length": getattr(self.tokenizer, "context_length", None)},
        }


def _encode_text_prefix(model, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's `CLIP.encode_text` (normalised) of a batch cut shorter than its context: the position table and
    the causal mask cut to the batch's length (its own forward adds the whole table, so takes full batches only)."""
    import torch
    from open_clip.transformer import text_global_pool

    length = tokens.shape[1]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:length, :length]))
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return torch.nn.functional.normalize(x, dim=-1)


def _diff_keys(expected: dict, state: dict) -> tuple[list[str], list[str]]:
    return sorted(set(expected) - set(state)), sorted(set(state) - set(expected))


def _image_size(model) -> int:
    size = getattr(model.visual, "image_size", 224)
    return size[0] if isinstance(size, (tuple, list)) else int(size)


def _native_size(model_cfg: dict[str, Any]) -> int | None:
    """The image size the architecture (and so its weights) was configured for."""
    size = model_cfg.get("vision_cfg", {}).get("image_size")
    return size[0] if isinstance(size, (tuple, list)) else size


def _check_size_fits(model_cfg: dict[str, Any], image_size: int | None, model_id: str) -> None:
    """Before the model is built: the requested size must tile into the tower's patches."""
    from reclip_eval.checkpoint import check_image_size

    patch = model_cfg.get("vision_cfg", {}).get("patch_size")
    if image_size and isinstance(patch, int):
        check_image_size(image_size, patch, model_id)


def _check_resizable(model, image_size: int | None, model_id: str) -> None:
    """Only open_clip's own ViT has the (class token + grid) table we resample; refuse the others."""
    from open_clip.transformer import VisionTransformer

    if image_size and not isinstance(model.visual, VisionTransformer):
        raise CheckpointError(f"{model_id}: --image-size is supported for open_clip ViT image towers only, this "
                              f"one is {type(model.visual).__name__}; drop --image-size")


def _load_weights(model, path: Path, what: str) -> None:
    """Strictly load the safetensors file at `path`, resampling the position table to the model's grid."""
    from reclip_eval.checkpoint import read_weights
    from reclip_eval.zoo.foreign_size import resample_class_token_table

    state = _strip_prefix(read_weights(path))
    expected = model.state_dict()
    missing, unexpected = _diff_keys(expected, state)
    if missing or unexpected:
        raise CheckpointError(f"{path}: does not match {what}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if POS_EMBED_KEY in state and state[POS_EMBED_KEY].shape != expected[POS_EMBED_KEY].shape:
        grid = model.visual.grid_size[0]
        state[POS_EMBED_KEY] = resample_class_token_table(state[POS_EMBED_KEY], grid, path, POS_EMBED_KEY)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: does not match {what}: {e}") from None


@contextmanager
def _quiet_random_init(weights_follow: bool):
    """open_clip warns "Model initialized randomly" whenever it loads no weights itself; ours are loaded right after
    (by our safetensors reader), so that warning would be false. Without weights it is true, and kept."""
    def drop(record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()

    root = logging.getLogger()  # open_clip logs through the root logger
    if weights_follow:
        root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _existing_weights_file(weights: str, arch: str, model_id: str) -> Path:
    """--checkpoint for openclip:ARCH: an existing safetensors file, or a one-line error naming the fix."""
    import open_clip

    path = Path(weights).expanduser()
    if path.is_file():
        return path
    if weights in open_clip.list_pretrained_tags_by_model(arch):
        raise CheckpointError(f"{model_id}: {weights!r} is one of open_clip's pretrained tags for {arch}, not a "
                              f"file; use --pretrained {weights}")
    if path.is_dir():
        raise CheckpointError(f"{weights}: a folder; --checkpoint for {PREFIX}ARCH takes a .safetensors file (an "
                              f"open_clip folder loads as --model {PREFIX}{weights})")
    raise CheckpointError(f"{weights}: no such file (--checkpoint for {PREFIX}ARCH takes a .safetensors file)")


def _pretrained_weights(arch: str, tag: str, model_id: str) -> tuple[dict[str, Any], Path, CheckpointSource]:
    """open_clip's registry entry of `tag` for `arch` and its Hub repo, from the Hugging Face cache (or the Hub
    when online), fetching safetensors weights only."""
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        from reclip_eval.registry import unknown_name

        raise unknown_name(f"open_clip pretrained tag for {arch}", tag, tags)
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg.get("hf_hub"):
        raise CheckpointError(f"{model_id} --pretrained {tag}: open_clip has no Hugging Face Hub repo for this tag "
                              "(only a URL to pickled weights, which are never loaded)")
    # open_clip's form: "org/name/" (its default file) or "org/name/FILE".
    repo, filename = posixpath.split(cfg["hf_hub"])
    wanted = _safetensors_name(filename)
    try:
        source = download_snapshot(repo, allow_patterns=[wanted])
    except CheckpointError as e:
        raise CheckpointError(f"{model_id} --pretrained {tag}: {e}; fetch it with `hf download {repo} {wanted}` "
                              "where the Hub is reachable") from None
    weights = source.path / wanted
    if not weights.is_file():
        raise CheckpointError(f"{model_id} --pretrained {tag}: {repo} has no {wanted} (its safetensors weights); "
                              "pickled weights are never loaded")
    return cfg, weights, source


def _safetensors_name(filename: str) -> str:
    """The safetensors file of an open_clip Hub entry (its registry may name the pickled file)."""
    if not filename or filename == "open_clip_pytorch_model.bin":
        return OPENCLIP_WEIGHTS[0]
    return filename.rsplit(".", 1)[0] + ".safetensors"


def load_openclip_spec(arch: str, request: LoadRequest) -> OpenClipAdapter:
    """`openclip:ARCH` (weights from --checkpoint or --pretrained, or none with --random-init), or
    `openclip:FOLDER`."""
    folder = Path(arch).expanduser()
    if folder.is_dir():
        if request.random_init or request.pretrained:
            flag = "--random-init" if request.random_init else "--pretrained"
            raise CheckpointError(f"{request.model_id}: a folder holds its weights; {flag} is for {PREFIX}ARCH")
        return OpenClipAdapter.from_dir(folder, request.model_id, image_size=request.image_size)
    return OpenClipAdapter.from_arch(arch, request.checkpoint, request.model_id, image_size=request.image_size,
                                     random_init=request.random_init, pretrained=request.pretrained)


def _is_openclip_folder(folder: ModelFolder) -> bool:
    return folder.has(OPENCLIP_CONFIG)


# Priority 10: open_clip_config.json decides, whatever a config.json beside it says.
@register_model_kind("open_clip", priority=10, recognise=_is_openclip_folder,
                     hub_files=(OPENCLIP_CONFIG, OPENCLIP_WEIGHTS[0]),
                     layout=f"{OPENCLIP_CONFIG}, safetensors weights ({', '.join(OPENCLIP_WEIGHTS)})",
                     prefix_form=PrefixForm(PREFIX, "ARCH", load_openclip_spec, random_init=True, pretrained=True))
def load_openclip_folder(folder: Path, request: LoadRequest) -> OpenClipAdapter:
    return OpenClipAdapter.from_dir(folder, request.model_id, request.hub_fields(), image_size=request.image_size)
