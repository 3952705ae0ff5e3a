"""Optimizer parameter rules as data (big_vision's `optax.make`): a recipe lists (pattern, setting) rules, each
trainable parameter takes the setting of the first rule that matches its name, and a parameter no rule covers is
an error naming it. Both trainers use this: the CLIP stages' `optimizer.param_rules` and the detector's
`schedule.param_rules`.

    param_rules:
      - {match: '.*', max_ndim: 1, weight_decay: 0}           # gains, biases, the temperature
      - {match: '.*(pos_embed|cls_token)', weight_decay: 0}   # names ending so
      - {match: '.*'}                                          # everything else: the optimizer's weight decay

Parameters with the same (lr, weight decay) share one optimizer group; which rule each parameter matched is
logged (debug: per parameter; info: rule -> count) and the counts are recorded in training.json.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # annotations only: recipes are read (listings, zoo entries) without torch
    from torch import nn

from reclip_eval.config import Rule, at_least, enforce_rules
from reclip_eval.errors import ConfigError

log = logging.getLogger(__name__)


def _regex_problem(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as e:
        return f"not a valid regular expression ({e}): {pattern!r}"
    return None


@dataclass(frozen=True)
class ParamRule:
    match: str  # regular expression, matched against the whole parameter name (re.fullmatch)
    max_ndim: int | None = None  # and only parameters of at most this many dimensions (1: gains and biases)
    weight_decay: float | None = None  # None: the optimizer's weight_decay; 0: no decay
    lr_scale: float = 1.0  # multiplies the base lr
    # Also scale the lr by the model's layer-wise decay (ViTDet: layer_decay^(depth - layer)); only models that
    # number their layers (the detector backbone) support it.
    layer_decay: bool = False

    config_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(("match",), _regex_problem), at_least("max_ndim", 0), at_least("weight_decay", 0),
        at_least("lr_scale", 0),
    )

    def __post_init__(self) -> None:
        enforce_rules(self)

    @property
    def label(self) -> str:
        """How logs and training.json name the rule."""
        return self.match + (f" (ndim<={self.max_ndim})" if self.max_ndim is not None else "")

    def matches(self, name: str, param: nn.Parameter) -> bool:
        return re.fullmatch(self.match, name) is not None and (self.max_ndim is None or param.ndim <= self.max_ndim)


# The CLIP practice: no weight decay on gains, biases, the temperature, and the position and class embeddings.
CLIP_RULES: tuple[ParamRule, ...] = (
    ParamRule(match=".*", max_ndim=1, weight_decay=0.0),
    ParamRule(match=".*(pos_embed|cls_token)", weight_decay=0.0),
    ParamRule(match=".*"),
)

# ViTDet: layer-wise lr decay over the backbone, no weight decay on norms, biases, position and background
# embeddings.
DETECTOR_RULES: tuple[ParamRule, ...] = (
    ParamRule(match=r"backbone\..*", max_ndim=1, weight_decay=0.0, layer_decay=True),
    ParamRule(match=r"backbone\..*(pos_embed|background)", weight_decay=0.0, layer_decay=True),
    ParamRule(match=r"backbone\..*", layer_decay=True),
    ParamRule(match=".*", max_ndim=1, weight_decay=0.0),
    ParamRule(match=".*(pos_embed|background)", weight_decay=0.0),
    ParamRule(match=".*"),
)


def clip_rules() -> list[ParamRule]:
    return list(CLIP_RULES)


def detector_rules() -> list[ParamRule]:
    return list(DETECTOR_RULES)


@dataclass
class ParamGroups:
    """Optimizer groups (first-appearance order of each (lr, weight decay)) and which rule took each parameter."""

    groups: list[dict] = field(default_factory=list)
    matched: dict[str, str] = field(default_factory=dict)  # parameter name -> rule label
    rule_labels: list[str] = field(default_factory=list)  # the rules, in the recipe's order

    def counts(self) -> dict[str, int]:
        """rule label -> how many parameters it took, every rule in the recipe's order (0: a rule that matched
        nothing, perhaps a mistyped pattern)."""
        counts = dict.fromkeys(self.rule_labels, 0)
        for label in self.matched.values():
            counts[label] += 1
        return counts

    def parameters(self) -> list[nn.Parameter]:
        return [p for group in self.groups for p in group["params"]]


def first_match(rules: Iterable[ParamRule], name: str, param: nn.Parameter) -> ParamRule | None:
    return next((rule for rule in rules if rule.matches(name, param)), None)


def match_rules(named_parameters: Iterable[tuple[str, nn.Parameter]], rules: list[ParamRule], source: str
                ) -> list[tuple[str, nn.Parameter, ParamRule]]:
    """(name, parameter, first matching rule) of every trainable parameter; an uncovered one is an error naming it
    and `source` (the recipe key)."""
    matched = []
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        rule = first_match(rules, name, param)
        if rule is None:
            raise ConfigError(source, [f"param_rules: no rule matches parameter {name!r} (shape "
                                       f"{list(param.shape)}); add a rule for it, or {{match: '.*'}} last"])
        matched.append((name, param, rule))
    return matched


def param_groups(named_parameters: Iterable[tuple[str, nn.Parameter]], rules: list[ParamRule], *, lr: float,
                 weight_decay: float, source: str, layer_scale: Callable[[str], float] | None = None) -> ParamGroups:
    """Group the trainable parameters by the first rule each matches. `layer_scale(name)` is the lr factor of the
    model's layer-wise decay (for rules with `layer_decay`); `source` names the recipe key in errors and logs."""
    settings: dict[tuple[float, float], list[nn.Parameter]] = {}
    result = ParamGroups(rule_labels=[rule.label for rule in rules])
    for name, param, rule in match_rules(named_parameters, rules, source):
        scale = rule.lr_scale
        if rule.layer_decay:
            if layer_scale is None:
                raise ConfigError(source, [f"param_rules: rule {rule.label!r} has layer_decay, but this model has "
                                           "no layer-wise lr decay (only the detector backbone does)"])
            scale = scale * layer_scale(name)
        decay = weight_decay if rule.weight_decay is None else rule.weight_decay
        settings.setdefault((scale, decay), []).append(param)
        result.matched[name] = rule.label
        log.debug("%s: parameter %s -> rule %s (lr x%g, weight decay %g)", source, name, rule.label, scale, decay)
    result.groups = [{"params": params, "lr": lr * scale, "weight_decay": decay}
                     for (scale, decay), params in settings.items()]
    log.info("%s: param_rules %s", source, ", ".join(f"{label} -> {n}" for label, n in result.counts().items()))
    return result
