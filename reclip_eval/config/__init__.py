"""Strict, typed configuration: YAML/JSON mappings parsed into dataclasses, `a.b=v` overrides."""

from reclip_eval.config.overrides import apply_overrides, deep_merge
from reclip_eval.config.schema import from_dict, load_yaml, to_dict

__all__ = ["apply_overrides", "deep_merge", "from_dict", "load_yaml", "to_dict"]
