"""The RECLIP dual encoder in torch: towers, position-embedding resampling, presets, tokenizer."""

from reclip_eval.models.clip import CLIP
from reclip_eval.models.config import CLIPConfig, PosEmbedResampleConfig, PreprocessConfig, TextConfig, VisionConfig
from reclip_eval.models.presets import PRESETS, build_config

__all__ = [
    "CLIP",
    "CLIPConfig",
    "PosEmbedResampleConfig",
    "PreprocessConfig",
    "TextConfig",
    "VisionConfig",
    "PRESETS",
    "build_config",
]
