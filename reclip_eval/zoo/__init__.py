"""Named models (zoo/*.yaml entries), model loading by spec string, and the adapters evaluation runs on."""

from reclip_eval.zoo.adapter import ModelAdapter
from reclip_eval.zoo.resolve import load_adapter

__all__ = ["ModelAdapter", "load_adapter"]
