"""The RECLIP dual encoder (paper Section 3.1): image tower + text tower projected to one embedding space, with
a learnable temperature. Saving/loading goes through huggingface_hub's `PyTorchModelHubMixin` with a strict loader
(reclip_eval.checkpoint): safetensors only, every tensor accounted for, the position embedding resampled on purpose.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from reclip_eval.models.config import CLIPConfig
from reclip_eval.models.text import TextTower
from reclip_eval.models.vision import VisionTower


class CLIP(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="reclip-eval",
    paper_url="https://openreview.net/forum?id=Ufc5cWhHko",
    license="apache-2.0",
    pipeline_tag="zero-shot-image-classification",
    tags=["clip", "reclip", "zero-shot-image-classification"],
):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.visual = VisionTower(config.vision, config.embed_dim)
        self.text = TextTower(config.text, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True, mask_ratio: float = 0.0) -> torch.Tensor:
        features = self.visual(pixels, mask_ratio=mask_ratio)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.text(tokens)
        return F.normalize(features, dim=-1) if normalize else features

    def temperature_scale(self) -> torch.Tensor:
        """exp(logit_scale) = 1/tau of eq. (1)-(2), clamped at max_logit_scale."""
        return self.logit_scale.clamp(max=math.log(self.config.max_logit_scale)).exp()

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor, mask_ratio: float = 0.0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (normalised image embeddings p, normalised text embeddings q, 1/tau); `mask_ratio`: see VisionTower."""
        return self.encode_image(pixels, mask_ratio=mask_ratio), self.encode_text(tokens), self.temperature_scale()

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Trade compute for memory in training: block activations are recomputed in the backward pass."""
        self.visual.transformer.activation_checkpointing = enabled
        self.text.transformer.activation_checkpointing = enabled

    def set_image_size(self, image_size: int) -> None:
        """Switch the image tower to `image_size`, resampling the position embedding (config.pos_embed_resample)."""
        self.visual.set_image_size(image_size, self.config.pos_embed_resample)
        self.config = dataclasses.replace(self.config, vision=self.visual.config)

    # --- huggingface_hub mixin hooks ------------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        from reclip_eval.checkpoint import write_config, write_weights

        write_weights(self, Path(save_directory))
        write_config(self.config, Path(save_directory))

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        revision: str | None = None,
        image_size: int | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        token: str | bool | None = None,
        local_files_only: bool = False,
        map_location: str = "cpu",
    ) -> CLIP:
        """Load from a local checkpoint dir or a Hub repo id (the HF cache is used offline, HF_HUB_OFFLINE=1).

        Replaces the mixin's loader, which ignores unknown config keys and loads weights with strict=False.
        `image_size` builds the model at another size and resamples the position embedding to it.
        """
        from reclip_eval.checkpoint import load_model, resolve_checkpoint

        source = resolve_checkpoint(
            str(pretrained_model_name_or_path),
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
        )
        return load_model(source.path, image_size=image_size, map_location=map_location)
