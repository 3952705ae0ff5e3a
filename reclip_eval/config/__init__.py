"""Strict, typed configuration: YAML/JSON mappings parsed into dataclasses, `a.b=v` overrides."""

from reclip_eval.config.overrides import apply_overrides, blame_overrides, deep_merge, parse_with_overrides
from reclip_eval.config.schema import Rule, above, at_least, enforce_rules, from_dict, load_yaml, to_dict

__all__ = ["Rule", "above", "apply_overrides", "at_least", "blame_overrides", "deep_merge", "enforce_rules", "from_dict",
           "load_yaml", "parse_with_overrides", "to_dict"]
