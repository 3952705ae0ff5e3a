"""Adapter for Hugging Face transformers `CLIPModel` folders (`--model hf:PATH`, or a Hub repo via hf-hub:).

Loaded with `local_files_only=True` and `use_safetensors=True`, never `trust_remote_code`; images are
preprocessed by the folder's own `CLIPImageProcessor`, texts by its own tokenizer. The folder is checked first
(zoo/folder_checks.py: config, weights of the config's shapes and finite, processor and tokenizer files), and the
tokenizer against the text tower's vocabulary before the model is built. At another image size the model
is rebuilt at that size with its position table resampled by us (zoo/foreign_size.py), and the processor's resize
and crop scaled to it.

Also the `hf_transformers` model kind: a folder whose config.json says model_type 'clip', and the `hf:PATH` prefix
form.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reclip_eval.checkpoint import CONFIG_NAME, check_image_size, file_sha256
from reclip_eval.errors import CheckpointError
from reclip_eval.zoo.folder_checks import HF_PROCESSOR_FILES, check_hf_tokenizer
from reclip_eval.zoo.model_kinds import LoadRequest, ModelFolder, PrefixForm, register_model_kind
from reclip_eval.zoo.torch_adapter import TorchAdapter

if TYPE_CHECKING:  # torch is imported on use: the kind registers itself without it
    import torch

POS_EMBED_KEY = "vision_model.embeddings.position_embedding.weight"
WEIGHTS_NAME = "model.safetensors"


def _features(output: Any) -> torch.Tensor:
    # transformers 5 returns a BaseModelOutputWithPooling (projected pooler_output), 4.x a tensor.
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output


class _ProcessorTransform:
    """PIL image -> (3, H, W) tensor through the model's own image processor (picklable for DataLoader workers)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image) -> torch.Tensor:
        return self.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        return f"{type(self.processor).__name__}({self.processor.to_dict()})"


class HFClipAdapter(TorchAdapter):
    def __init__(self, folder: Path, model_id: str, source: dict[str, Any] | None = None,
                 image_size: int | None = None):
        from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"{folder}: no {WEIGHTS_NAME}; pickled weights are never loaded")
        try:
            config = CLIPConfig.from_pretrained(str(folder), local_files_only=True)
            vision = config.vision_config
            if image_size:  # before the weights are read
                check_image_size(image_size, vision.patch_size, model_id)
            self.processor = CLIPImageProcessor.from_pretrained(str(folder), local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception for a broken file
            raise CheckpointError(f"{folder}: not a transformers CLIPModel folder "
                                  f"({type(e).__name__}: {' '.join(str(e).split())})") from None
        check_hf_tokenizer(self.tokenizer, config.text_config.vocab_size, folder)
        try:
            self.model = CLIPModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True).eval()
        except (OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{weights}: does not load into the CLIPModel {CONFIG_NAME} describes "
                                  f"({' '.join(str(e).split())})") from None
        self.resample = None
        if image_size and image_size != vision.image_size:
            from reclip_eval.zoo.foreign_size import describe_resample

            self.model = _resized_model(self.model, image_size, weights)
            self.resample = describe_resample(vision.image_size, image_size)
        if image_size:
            self.processor = _resized_processor(folder, self.processor, image_size)
        self.folder = folder
        self.model_id = model_id
        self.sha256 = file_sha256(weights)
        self.source = source or {}
        self.transform = _ProcessorTransform(self.processor)
        self.image_size = _crop_height(self.processor)
        self.context_length = int(self.model.config.text_config.max_position_embeddings)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.context_length,
                              return_tensors="pt")["input_ids"]

    def placed_modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.nn.functional.normalize(_features(self.model.get_image_features(pixel_values=pixels)), dim=-1)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.nn.functional.normalize(_features(self.model.get_text_features(input_ids=tokens)), dim=-1)

    def decisive_text_length(self, tokens: torch.Tensor) -> int | None:
        """transformers' CLIPModel text tower: causal, absolute positions, pooled at the first eos (the argmax of
        the ids for an eos id of 2, as transformers does); any other model class says for itself (None: uncut)."""
        from transformers import CLIPModel

        from reclip_eval.models.text import prefix_through

        if type(self.model) is not CLIPModel:
            return None
        eos = self.model.text_model.eos_token_id
        return prefix_through(tokens.argmax(dim=-1) if eos == 2 else (tokens == eos).int().argmax(dim=-1))

    def text_config(self) -> dict[str, Any]:
        config = self.model.config
        return {**super().text_config(), "text_config": config.text_config.to_dict(),
                "projection_dim": config.projection_dim}

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "family": "hf_transformers",
            "weights": {"sha256": self.sha256, "path": str(self.folder), **self.source},
            "image_size": self.image_size,
            "pos_embed_resample": self.resample,
            "preprocess": self.processor.to_dict(),
            "tokenizer": {"name": type(self.tokenizer).__name__, "context_length": self.context_length},
        }


def _crop_height(processor) -> int:
    crop = processor.crop_size  # a dict in transformers 4, a SizeDict in 5
    return int(crop["height"] if isinstance(crop, dict) else getattr(crop, "height", crop))


def _resized_model(model, image_size: int, source: Path):
    """The same CLIPModel built at `image_size` (transformers sizes its position table from the config), with the
    table resampled and every other tensor copied."""
    from transformers import CLIPModel

    from reclip_eval.zoo.foreign_size import resample_class_token_table

    config = copy.deepcopy(model.config)
    config.vision_config.image_size = image_size
    state = dict(model.state_dict())
    grid = image_size // config.vision_config.patch_size
    state[POS_EMBED_KEY] = resample_class_token_table(state[POS_EMBED_KEY], grid, source, POS_EMBED_KEY)
    resized = CLIPModel(config).to(model.dtype)
    for key, value in resized.state_dict().items():  # position ids follow the table's length
        if key.endswith("position_ids"):
            state[key] = value
    resized.load_state_dict(state, strict=True)
    return resized.eval()


def _resized_processor(folder: Path, processor, image_size: int):
    """The folder's processor with the crop at `image_size` and the resize scaled by the same factor."""
    from transformers import CLIPImageProcessor

    scale = image_size / _crop_height(processor)
    size = {k: round(v * scale) for k, v in processor.to_dict()["size"].items() if isinstance(v, int)}
    return CLIPImageProcessor.from_pretrained(str(folder), local_files_only=True, size=size,
                                              crop_size={"height": image_size, "width": image_size})


def _is_hf_clip_folder(folder: ModelFolder) -> bool:
    return folder.config_says("model_type", "clip")


def _load_hf_spec(path: str, request: LoadRequest) -> HFClipAdapter:
    """`hf:PATH`: the folder at PATH, taken as a CLIPModel folder without recognising it first."""
    return load_hf_clip_folder(Path(path).expanduser(), request)


@register_model_kind("hf_transformers", priority=40, recognise=_is_hf_clip_folder,
                     hub_files=(CONFIG_NAME, WEIGHTS_NAME, *HF_PROCESSOR_FILES),
                     layout=f"{CONFIG_NAME} with model_type 'clip' (a transformers CLIPModel), {WEIGHTS_NAME}, "
                            "its image processor and tokenizer",
                     prefix_form=PrefixForm("hf:", "PATH", _load_hf_spec))
def load_hf_clip_folder(folder: Path, request: LoadRequest) -> HFClipAdapter:
    return HFClipAdapter(folder, request.model_id, request.hub_fields(), image_size=request.image_size)
