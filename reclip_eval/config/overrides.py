"""`a.b=v` command-line overrides and the deep merge used by stage inheritance."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from reclip_eval.errors import ConfigError

T = TypeVar("T")


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return `base` updated by `update`: mappings merge recursively, everything else (lists included) is replaced."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str], *, source: str = "command line") -> dict[str, Any]:
    """Apply `a.b.c=value` strings (values parsed as YAML scalars/lists) to a copy of `data`.

    A list index is a number: `stages.1.steps=200`. Unknown keys are not rejected here: the strict dataclass
    parse that follows names them together with the file.
    """
    out = copy.deepcopy(data)
    problems = []
    for item in overrides:
        if "=" not in item:
            problems.append(f"{item!r}: expected key=value (e.g. stages.0.steps=100)")
            continue
        dotted, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        problem = _set_path(out, dotted.split("."), value)
        if problem:
            problems.append(f"{item}: {problem}")
    if problems:
        raise ConfigError(source, problems)
    return out


def _list_index(part: str, items: list, where: str) -> int | str:
    """The list position `part` names, or what is wrong with it. Only 0..len-1: Python's negative indexes would
    let `stages.-1.steps` quietly set the last stage."""
    if not (part.isascii() and part.isdigit()) or int(part) >= len(items):
        return f"{where} is a list of {len(items)}; expected an index 0..{len(items) - 1} after it, got {part!r}"
    return int(part)


def _set_path(root: dict[str, Any], parts: list[str], value: Any) -> str | None:
    """Set `value` at the dotted path `parts` inside `root` (mappings created as needed); what is wrong, or None."""
    node: Any = root
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth]) or "<top level>"
        if not part:
            return "empty key in the dotted path"
        last = depth == len(parts) - 1
        if isinstance(node, list):
            index = _list_index(part, node, where)
            if isinstance(index, str):
                return index
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:  # a missing or null section (`slip: null`) is created by its first key
                    node[part] = {}
                node = node[part]
        else:
            return f"{where} is {node!r}, not a mapping or list, so it has no key {part!r}"
    return None


def _key_parts(text: str) -> list[str]:
    """`stages[0].optimizer.lr` or `stages.0.optimizer.lr` -> ["stages", "0", "optimizer", "lr"]."""
    return [p for p in re.split(r"[.\[\]]+", text) if p]


def blame_overrides(problems: list[str], overrides: list[str]) -> tuple[list[str], list[str]]:
    """When the config file alone is valid, tie each problem to the `key=value` override(s) that set its key, or
    else that set the same key in another list item (stages inherit from the one before). Returns the problems,
    each followed by its override(s), and the overrides to name as the source (all of them when none matched)."""
    keys = [(item, _key_parts(item.split("=", 1)[0])) for item in overrides]
    annotated, culprits = [], []
    for problem in problems:
        key = _key_parts(problem.split(":", 1)[0])
        matched = [item for item, dotted in keys if dotted and key[:len(dotted)] == dotted]
        matched = matched or [item for item, dotted in keys
                              if len(key) > 2 and len(dotted) > 2 and key[0] == dotted[0] and key[2:] == dotted[2:]]
        annotated.append(f"{problem} (from {', '.join(matched)})" if matched else problem)
        culprits += [m for m in matched if m not in culprits]
    return annotated, culprits or list(overrides)


def parse_with_overrides(parse: Callable[[dict[str, Any]], T], raw: dict[str, Any], overrides: list[str],
                         path: str | Path) -> T:
    """`parse` (which raises one ConfigError listing every problem) of the file's mapping `raw` with the `key=value`
    overrides applied: one parse when it succeeds. Only when it fails and overrides were given is the file alone
    parsed too, to tell who broke it: if the file alone is fine, the error names the override(s), not the file."""
    overridden = apply_overrides(raw, overrides, source=f"{path} (with overrides)")
    try:
        return parse(overridden)
    except ConfigError as e:
        if not overrides:
            raise
        failure = e
    try:
        parse(raw)
    except ConfigError:
        raise failure from None  # the file itself is broken: its own problems name it
    problems, culprits = blame_overrides(failure.problems, overrides)
    raise ConfigError(f"command-line override {' '.join(culprits)} (recipe {path})", problems) from None
