"""Adapter for Hugging Face transformers dual-encoder folders (`--model hf:PATH`, or a Hub repo via hf-hub:):
`CLIPModel`, `SiglipModel` and `Siglip2Model`, told apart by config.json's model_type (folder_checks.HF_DUAL_ENCODERS).

Loaded with `local_files_only=True` and `use_safetensors=True`, never `trust_remote_code`; images are
preprocessed by the folder's own image processor (CLIPImageProcessor, SiglipImageProcessor; SigLIP 2's NaFlex one
packed per image, zoo/hf_siglip.py), texts by its own tokenizer padded to the text tower's length (SigLIP's
processor pads to max_length 64, and SigLIP pools the last position: the padding and its mask are part of the
embedding). The folder is checked first (zoo/folder_checks.py: config,
weights of the config's shapes and finite, processor and tokenizer files), and the tokenizer against the text
tower's vocabulary before the model is built. Embeddings are transformers' own get_image_features /
get_text_features, each architecture pooling its own way. At another image size a CLIPModel is rebuilt at that
size with its position table resampled by us (zoo/foreign_size.py), and the processor's resize and crop scaled to
it; SigLIP (a table without a class token) is refused at another size, SigLIP 2 at any (its processor sizes each
image).

SigLIP's logit scale and bias are recorded in describe(); zero-shot ranking does not use them (neither changes the
order of one image's scores).

Also the `hf_transformers` model kind: a folder whose config.json says a model_type of HF_DUAL_ENCODERS, and the
`hf:PATH` prefix form.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reclip_eval.checkpoint import CONFIG_NAME, check_image_size, file_sha256
from reclip_eval.errors import CheckpointError
from reclip_eval.zoo.folder_checks import HF_DUAL_ENCODERS, HF_PROCESSOR_FILES, check_hf_tokenizer, hf_dual_encoder
from reclip_eval.zoo.model_kinds import LoadRequest, ModelFolder, PrefixForm, register_model_kind
from reclip_eval.zoo.torch_adapter import TorchAdapter

if TYPE_CHECKING:  # torch is imported on use: the kind registers itself without it
    import torch

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


class HFDualEncoderAdapter(TorchAdapter):
    def __init__(self, folder: Path, model_id: str, source: dict[str, Any] | None = None,
                 image_size: int | None = None):
        import transformers

        self.architecture = hf_dual_encoder(folder)
        model_class = self.architecture.model_class
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"{folder}: no {WEIGHTS_NAME}; pickled weights are never loaded")
        if image_size and self.architecture.naflex:
            raise CheckpointError(f"{model_id}: image size {image_size}: a {model_class} sizes each image by its "
                                  "processor's max_num_patches (preprocessor settings), not by an image size")
        try:
            config = getattr(transformers, self.architecture.config_class).from_pretrained(
                str(folder), local_files_only=True)
            vision = config.vision_config
            if image_size:  # before the weights are read
                check_image_size(image_size, vision.patch_size, model_id)
            self.processor = getattr(transformers, self.architecture.image_processor_class).from_pretrained(
                str(folder), local_files_only=True)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception for a broken file
            raise CheckpointError(f"{folder}: not a transformers {model_class} folder "
                                  f"({type(e).__name__}: {' '.join(str(e).split())})") from None
        if image_size and image_size != vision.image_size and self.architecture is not HF_DUAL_ENCODERS["clip"]:
            raise CheckpointError(f"{model_id}: image size {image_size}: a {model_class} runs at its own size "
                                  f"{vision.image_size} only (its position table has no class token to keep)")
        check_hf_tokenizer(self.tokenizer, config.text_config.vocab_size, folder)
        try:
            self.model = getattr(transformers, model_class).from_pretrained(
                str(folder), local_files_only=True, use_safetensors=True).eval()
        except (OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{weights}: does not load into the {model_class} {CONFIG_NAME} describes "
                                  f"({' '.join(str(e).split())})") from None
        self.resample = None
        if image_size and image_size != vision.image_size:
            from reclip_eval.zoo.foreign_size import describe_resample

            self.model = _resized_model(self.model, image_size, weights, self.architecture.position_key)
            self.resample = describe_resample(vision.image_size, image_size)
        if image_size:
            self.processor = _resized_processor(folder, self.processor, image_size)
        self.folder = folder
        self.model_id = model_id
        self.sha256 = file_sha256(weights)
        self.source = source or {}
        if self.architecture.naflex:
            from reclip_eval.zoo.hf_siglip import NaFlexTransform, nominal_image_size

            self.transform, self.image_size = NaFlexTransform(self.processor), nominal_image_size(self.processor)
        else:
            self.transform, self.image_size = _ProcessorTransform(self.processor), _processed_height(self.processor)
        self.context_length = int(self.model.config.text_config.max_position_embeddings)
        # SigLIP's text tower is bidirectional and pooled at the last position, so the padding mask changes its
        # embedding: the model sees it where the tokenizer returns one, as from transformers' own processor and
        # zero-shot pipeline (SiglipTokenizer of transformers 5 does, of 4.x does not). A causal tower pooled at
        # its eos (CLIP) is the same with or without it.
        self.uses_padding_mask = (not self.architecture.causal_text
                                  and "attention_mask" in self.tokenizer.model_input_names)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.context_length,
                              return_tensors="pt")["input_ids"]

    def placed_modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        import torch

        if self.architecture.naflex:
            from reclip_eval.zoo.hf_siglip import unpack

            inputs = unpack(pixels)
        else:
            inputs = {"pixel_values": pixels}
        return torch.nn.functional.normalize(_features(self.model.get_image_features(**inputs)), dim=-1)

    def image_gmacs(self) -> float:
        if not self.architecture.naflex:
            return super().image_gmacs()
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from reclip_eval.zoo.hf_siglip import blank_packed

        with torch.no_grad(), FlopCounterMode(display=False) as counter:  # the whole patch budget, as a square
            self.embed_pixels(blank_packed(self.processor, self.device))
        return round(counter.get_total_flops() / 2e9, 6)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        import torch

        mask = self._padding_mask(tokens) if self.uses_padding_mask else None
        return torch.nn.functional.normalize(
            _features(self.model.get_text_features(input_ids=tokens, attention_mask=mask)), dim=-1)

    def _padding_mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """The tokenizer's attention mask, read from the ids it padded. On the left (Gemma's tokenizer, as SigLIP 2's
        fixed-size checkpoints ship it): 0 before the first id that is not the pad. On the right: 0 from the first
        pad on, except that a pad id which is also the end token (SigLIP's '</s>') counts once, as the real end."""
        pad_id = self.tokenizer.pad_token_id
        if self.tokenizer.padding_side == "left":
            return ((tokens != pad_id).cumsum(dim=-1) > 0).long()
        pads_so_far = (tokens == pad_id).cumsum(dim=-1)
        return (pads_so_far <= int(pad_id == self.tokenizer.eos_token_id)).long()

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
                "projection_dim": getattr(config, "projection_dim", None)}  # SigLIP has no projection

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "family": "hf_transformers",
            "architecture": self.architecture.model_class,
            "weights": {"sha256": self.sha256, "path": str(self.folder), **self.source},
            "image_size": self.image_size,
            "pos_embed_resample": self.resample,
            "preprocess": self.processor.to_dict(),
            "tokenizer": {"name": type(self.tokenizer).__name__, "context_length": self.context_length,
                          "padding_mask": self.uses_padding_mask},
            **self._logit_calibration(),
        }

    def _logit_calibration(self) -> dict[str, float]:
        """exp(logit_scale), and SigLIP's logit_bias: what turns a cosine into the model's logit (its pipeline's
        sigmoid probability); recorded, not used by the ranking."""
        calibration = {"logit_scale": self.model.logit_scale.detach().exp().item()}
        if hasattr(self.model, "logit_bias"):
            calibration["logit_bias"] = self.model.logit_bias.detach().item()
        return calibration


def _processed_height(processor) -> int:
    """The side of the square the processor hands the model: its crop (CLIP), or its resize (SigLIP, no crop)."""
    size = processor.crop_size if getattr(processor, "do_center_crop", False) else processor.size
    return int(size["height"] if isinstance(size, dict) else getattr(size, "height", size))  # dict (4) or SizeDict (5)


def _resized_model(model, image_size: int, source: Path, position_key: str):
    """The same model built at `image_size` (transformers sizes its position table from the config), with the
    table resampled and every other tensor copied."""
    from reclip_eval.zoo.foreign_size import resample_class_token_table

    config = copy.deepcopy(model.config)
    config.vision_config.image_size = image_size
    state = dict(model.state_dict())
    grid = image_size // config.vision_config.patch_size
    state[position_key] = resample_class_token_table(state[position_key], grid, source, position_key)
    resized = type(model)(config).to(model.dtype)
    for key, value in resized.state_dict().items():  # position ids follow the table's length
        if key.endswith("position_ids"):
            state[key] = value
    resized.load_state_dict(state, strict=True)
    return resized.eval()


def _resized_processor(folder: Path, processor, image_size: int):
    """The folder's processor with the crop at `image_size` and the resize scaled by the same factor."""
    scale = image_size / _processed_height(processor)
    size = {k: round(v * scale) for k, v in processor.to_dict()["size"].items() if isinstance(v, int)}
    return type(processor).from_pretrained(str(folder), local_files_only=True, size=size,
                                           crop_size={"height": image_size, "width": image_size})


def _is_hf_dual_encoder_folder(folder: ModelFolder) -> bool:
    return any(folder.config_says("model_type", model_type) for model_type in HF_DUAL_ENCODERS)


def _load_hf_spec(path: str, request: LoadRequest) -> HFDualEncoderAdapter:
    """`hf:PATH`: the folder at PATH, taken as a transformers dual-encoder folder without recognising it first."""
    return load_hf_folder(Path(path).expanduser(), request)


@register_model_kind("hf_transformers", priority=40, recognise=_is_hf_dual_encoder_folder,
                     hub_files=(CONFIG_NAME, WEIGHTS_NAME, *HF_PROCESSOR_FILES),
                     layout=f"{CONFIG_NAME} with model_type {' or '.join(map(repr, HF_DUAL_ENCODERS))} (a "
                            f"transformers {', '.join(a.model_class for a in HF_DUAL_ENCODERS.values())}), "
                            f"{WEIGHTS_NAME}, its image processor and tokenizer",
                     prefix_form=PrefixForm("hf:", "PATH", _load_hf_spec))
def load_hf_folder(folder: Path, request: LoadRequest) -> HFDualEncoderAdapter:
    return HFDualEncoderAdapter(folder, request.model_id, request.hub_fields(), image_size=request.image_size)
