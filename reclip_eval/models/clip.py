"""The RECLIP dual encoder (paper Section 3.1): image tower + text tower projected to one embedding space, with
a learnable temperature. A plain torch module: saving and loading are reclip_eval.checkpoint's (`save_checkpoint`,
`load_checkpoint`: safetensors only, every tensor accounted for, the position embedding resampled on purpose).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from reclip_eval.models.config import CLIPConfig, ImageSize
from reclip_eval.models.text import TextTower
from reclip_eval.models.token_reduction import ImageTokens
from reclip_eval.models.vision import VisionTower


class CLIP(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.visual = VisionTower(config.vision, config.embed_dim)
        self.text = TextTower(config.text, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))
        # SLIP's self-supervised head (train/slip.py) while a recipe with `slip:` trains; None (and so in no state
        # dict, checkpoint or evaluation) otherwise.
        self.slip_head: nn.Module | None = None

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True, image_tokens: ImageTokens | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        features = self.visual(pixels, image_tokens, generator)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.text(tokens)
        return F.normalize(features, dim=-1) if normalize else features

    def temperature_scale(self) -> torch.Tensor:
        """exp(logit_scale) = 1/tau of eq. (1)-(2), clamped at max_logit_scale."""
        return self.logit_scale.clamp(max=math.log(self.config.max_logit_scale)).exp()

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor, image_tokens: ImageTokens | None = None,
                generator: torch.Generator | None = None, views: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, ...]:
        """-> (normalised image embeddings p, normalised text embeddings q, 1/tau); `image_tokens`, `generator`:
        see VisionTower. With SLIP's two `views` (training), also their `slip_head` outputs, each view through the
        image tower's features and the head on its own, as SLIP's forward runs them (inside this forward, so a
        data-parallel wrapper synchronises the head too)."""
        outputs = (self.encode_image(pixels, image_tokens=image_tokens, generator=generator),
                   self.encode_text(tokens), self.temperature_scale())
        if views is None:
            return outputs
        return (*outputs, *(self.slip_head(self.visual.features(view)) for view in views))

    def build_fixed_buffers(self) -> None:
        """Compute the tensors that are functions of the config, not weights (a sin-cos position table), on the CPU:
        after a meta-device build they are still unset."""
        self.visual.build_fixed_buffers()

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Trade compute for memory in training: block activations are recomputed in the backward pass."""
        self.visual.transformer.activation_checkpointing = enabled
        self.text.transformer.activation_checkpointing = enabled

    def set_image_size(self, image_size: ImageSize) -> None:
        """Switch the image tower to `image_size` (an int, or (height, width)), resampling the position embedding
        (config.pos_embed_resample); the same size changes nothing."""
        self.visual.set_image_size(image_size, self.config.pos_embed_resample)
        self.config = dataclasses.replace(self.config, vision=self.visual.config)

    def set_text_length(self, length: int) -> str | None:
        """Resize the text position table to `length` positions (linear, as open_clip and CLIPA: a recipe's
        `text_positions: resize`); returns the description of what was done, None when nothing changed."""
        description = self.text.set_context_length(length)
        self.config = dataclasses.replace(self.config, text=self.text.config)
        return description
