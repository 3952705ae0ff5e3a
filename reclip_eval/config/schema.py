"""Parse plain mappings into (nested) dataclasses, strictly.

huggingface_hub's `_load_dataclass` and many configurators silently drop unknown keys, so a typo such as
`warmup_step: 500` trains with the default. Here an unknown key, a missing required key or a value of the wrong
type is an error naming the file and the dotted key (with the closest valid name), and all problems of a file are
reported together rather than one per run. A dataclass may state value rules as data (`config_rules`, a tuple of
`Rule`): every broken rule of the keys that converted is reported with its dotted key, in the same pass.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from reclip_eval.errors import ConfigError
from reclip_eval.names import near_matches

T = TypeVar("T")
_MISSING = dataclasses.MISSING


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with `yaml.safe_load`; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), [f"not UTF-8 text ({e.reason} at byte {e.start})"]) from None
    except IsADirectoryError:
        raise ConfigError(str(path), ["is a folder; expected a YAML file"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(str(path), [f"not valid YAML: {e}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"expected a mapping at the top level, got {type(data).__name__}"])
    return data


def from_dict(cls: type[T], data: Any, *, source: str = "<config>") -> T:
    """Build dataclass `cls` from `data`, raising one ConfigError that lists every problem found."""
    problems: list[str] = []
    result = _convert(cls, data, "", problems)
    if problems:
        raise ConfigError(source, problems)
    return result


@dataclasses.dataclass(frozen=True)
class Rule:
    """A value rule of a config dataclass (its `config_rules`): `check(*values of keys)` says what is wrong, or
    returns None. Reported under the first key."""

    keys: tuple[str, ...]
    check: Callable[..., str | None]


def at_least(key: str, low: float, note: str = "") -> Rule:
    return Rule((key,), lambda v: None if v is None or v >= low else f"must be >= {low}{note}, got {v}")


def above(key: str, low: float, note: str = "") -> Rule:
    return Rule((key,), lambda v: None if v is None or v > low else f"must be > {low}{note}, got {v}")


def _defaults(fields: dict[str, dataclasses.Field]) -> dict[str, Any]:
    return {n: f.default_factory() if f.default_factory is not _MISSING else f.default for n, f in fields.items()
            if f.default is not _MISSING or f.default_factory is not _MISSING}


def _broken_rules(cls: Any, values: dict[str, Any], skip: set[str]) -> list[tuple[Rule, str]]:
    broken = []
    for rule in getattr(cls, "config_rules", ()):
        if not any(k in skip or k not in values for k in rule.keys):
            message = rule.check(*(values[k] for k in rule.keys))
            if message:
                broken.append((rule, message))
    return broken


def enforce_rules(obj: Any) -> None:
    """For `__post_init__`: raise ValueError listing every broken rule of dataclass `obj` (for objects built in
    code; `from_dict` reports the same rules one per key, before building)."""
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    broken = _broken_rules(type(obj), values, set())
    if broken:
        raise ValueError("; ".join(f"{r.keys[0]}: {m}" for r, m in broken))


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain JSON/YAML-ready data (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _where(path: str) -> str:
    return path or "<top level>"


def _convert(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        for cand in candidates:  # first alternative that converts without problems wins
            trial: list[str] = []
            out = _convert(cand, value, path, trial)
            if not trial:
                return out
        # A mapping (or list) given where exactly one alternative takes one is meant as that alternative: its own
        # problems ("slip.temperature: must be > 0") say more than "expected a mapping or null".
        shaped = [cand for cand in candidates if _container_for(cand, value)]
        if len(shaped) == 1:
            return _convert(shaped[0], value, path, problems)
        names = " or ".join(_type_name(a) for a in args)
        problems.append(f"{_where(path)}: expected {names}, got {value!r}")
        return None
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            problems.append(f"{_where(path)}: {value!r} is not one of {choices}")
        return value
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, path, problems)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            problems.append(f"{_where(path)}: expected a list, got {value!r}")
            return None
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                problems.append(f"{_where(path)}: expected {len(args)} items, got {len(value)}")
                return None
            return tuple(_convert(a, v, f"{path}[{i}]", problems) for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item_tp = args[0] if args else Any
        items = [_convert(item_tp, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{_where(path)}: expected a mapping, got {value!r}")
            return None
        val_tp = args[1] if len(args) == 2 else Any
        return {k: _convert(val_tp, v, f"{path}.{k}" if path else str(k), problems) for k, v in value.items()}
    return _convert_scalar(tp, value, path, problems)


def _container_for(tp: Any, value: Any) -> bool:
    """Whether `value` is the container type `tp` is read from (a mapping for a dataclass or dict, a list)."""
    if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict:
        return isinstance(value, dict)
    return typing.get_origin(tp) in (list, tuple) and isinstance(value, (list, tuple))


def _convert_scalar(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    if tp is float:
        # YAML reads `1e-3` as a string (YAML 1.1), so accept numeric strings for floats only.
        if isinstance(value, bool):
            problems.append(f"{_where(path)}: expected a number, got {value!r}")
            return None
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        problems.append(f"{_where(path)}: expected a number, got {value!r}")
        return None
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        problems.append(f"{_where(path)}: expected an integer, got {value!r}")
        return None
    if tp is bool:
        if isinstance(value, bool):
            return value
        problems.append(f"{_where(path)}: expected true or false, got {value!r}")
        return None
    if tp is str:
        if isinstance(value, str):
            return value
        problems.append(f"{_where(path)}: expected a string, got {value!r}")
        return None
    if isinstance(tp, type) and not isinstance(value, tp):
        problems.append(f"{_where(path)}: expected {_type_name(tp)}, got {value!r}")
        return None
    return value


def _convert_dataclass(cls: Any, value: Any, path: str, problems: list[str]) -> Any:
    if dataclasses.is_dataclass(value) and isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        problems.append(f"{_where(path)}: expected a mapping for {cls.__name__}, got {value!r}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, item in value.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in fields:
            near = near_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean '{near[0]}'?" if near else f"; valid keys: {', '.join(sorted(fields))}"
            problems.append(f"{key_path}: unknown key{hint}")
            continue
        kwargs[key] = _convert(hints[key], item, key_path, problems)
    for name, f in fields.items():
        if name not in kwargs and f.default is _MISSING and f.default_factory is _MISSING:
            problems.append(f"{path + '.' if path else ''}{name}: required key is missing")
    failed = {k for k in kwargs if _has_problem_under(problems, f"{path}.{k}" if path else k)}
    broken = [f"{path + '.' if path else ''}{r.keys[0]}: {message}" for r, message in
              _broken_rules(cls, {**_defaults(fields), **kwargs}, failed)]
    problems.extend(broken)  # every rule of the keys that converted, even when another key failed
    if _has_problem_under(problems, path):
        return None  # a half-converted object would only add a second, confusing error from __post_init__
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        problems.append(f"{_where(path)}: {e}")
        return None


def _has_problem_under(problems: list[str], path: str) -> bool:
    if not path:
        return bool(problems)
    return any(p.startswith(path + ".") or p.startswith(path + ":") or p.startswith(path + "[") for p in problems)


_NAMES = {type(None): "null", int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _type_name(tp: Any) -> str:
    if tp in _NAMES:
        return _NAMES[tp]
    if typing.get_origin(tp) in (list, tuple):
        return "a list"
    if typing.get_origin(tp) is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))
