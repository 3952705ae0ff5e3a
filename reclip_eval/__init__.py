"""reclip-eval: RECLIP (resource-efficient CLIP) training, zero-shot evaluation suite and model hub."""

__version__ = "0.1.0"
