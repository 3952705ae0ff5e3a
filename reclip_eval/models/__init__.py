"""The RECLIP dual encoder in torch: towers, position-embedding resampling, presets, tokenizer."""

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


def __getattr__(name: str):
    # CLIP (torch) is loaded on first use: the configs and presets are read by listings that import no torch.
    if name == "CLIP":
        from reclip_eval.models.clip import CLIP

        return CLIP
    raise AttributeError(f"module 'reclip_eval.models' has no attribute {name!r}")
