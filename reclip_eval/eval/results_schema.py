"""The one schema of a results JSON (reclip_eval/eval/results.py writes it), checked wherever a results file is read:
the leaderboard, the results store before it keeps or refuses a file, and model cards.

A file that fails is refused with one line naming the file and each bad key, never rendered: a malformed number
shown as a plausible one (`true` as 100.00, 85.3 % stored as a fraction as 8530.00) is worse than no number.

Metrics are fractions in [0, 1]. The one other value is LVIS's -1, "undefined: no ground truth in that slice"
(reclip_eval/metrics/lvis.py, as lvis-api and faster-coco-eval write it), allowed in detection results only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reclip_eval.errors import ReclipError, read_json
from reclip_eval.eval.results import SCHEMA_VERSION
from reclip_eval.eval.task_kinds import TASK_KINDS

UNDEFINED = -1.0  # LVIS: no ground truth in that slice (e.g. no large objects), so the AP is undefined
UNDEFINED_KINDS = ("detection",)  # the task kinds whose metrics may be UNDEFINED
_MAX_SHOWN = 6  # problems named in one message; the rest are counted


class InvalidResultsError(ReclipError):
    """A results file that is not valid JSON or does not follow the results schema; names the file and keys."""


def _number(value: Any) -> bool:
    # bool is an int subclass in Python, and true/false in a metric is a bug, not 1/0.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)


Check = tuple[str, Callable[[Any], bool]]  # (what was expected, the test)
TEXT: Check = ("a non-empty string", lambda v: isinstance(v, str) and v.strip() != "")
OPTIONAL_TEXT: Check = ("a string or null", lambda v: v is None or isinstance(v, str))
OBJECT: Check = ("an object", lambda v: isinstance(v, dict))
OPTIONAL_OBJECT: Check = ("an object or null", lambda v: v is None or isinstance(v, dict))
LIST: Check = ("a list", lambda v: isinstance(v, list))
def _side(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# A model's input size: one side, or [height, width] for a non-square input (models/config.py VisionConfig).
IMAGE_SIZE: Check = ("a positive integer or a [height, width] pair of them",
                     lambda v: _side(v) or (isinstance(v, list) and len(v) == 2 and all(map(_side, v))))
AMOUNT: Check = ("a finite number >= 0 or null", lambda v: v is None or (_finite(v) and v >= 0))
VERSION: Check = (f"{SCHEMA_VERSION}", lambda v: _number(v) and v == SCHEMA_VERSION)

# Dotted path -> (required, check). Only what readers rely on is checked: the rest of a file describes the run.
FIELDS: dict[str, tuple[bool, Check]] = {
    "schema_version": (True, VERSION),
    "task": (True, OBJECT),
    "task.name": (True, TEXT),
    "task.kind": (True, TEXT),
    "task.split": (False, OPTIONAL_TEXT),
    "model": (True, OBJECT),
    "model.id": (True, TEXT),
    "model.image_size": (True, IMAGE_SIZE),
    "model.backend": (False, OPTIONAL_TEXT),
    "model.weights": (False, OPTIONAL_OBJECT),
    "model.weights.sha256": (False, OPTIONAL_TEXT),
    "model.weights.hub_commit": (False, OPTIONAL_TEXT),
    "model.compute": (False, OPTIONAL_OBJECT),
    "model.compute.image_gmacs": (False, AMOUNT),
    "model.compute.train_gmacs": (False, AMOUNT),
    "model.compute.train_device_hours": (False, AMOUNT),
    "model.compute.train_samples_seen": (False, AMOUNT),
    "precision": (True, TEXT),
    "decode": (False, TEXT),  # absent: decoded in full; "draft": JPEG reduced-scale decoding (data/decode.py)
    "prompts": (False, OPTIONAL_OBJECT),
    "metrics": (True, OBJECT),
    "counts": (True, OBJECT),
    "skipped": (True, LIST),
    "run": (True, OBJECT),
    "run.command": (True, TEXT),
    "run.device": (True, TEXT),
    "run.software": (True, OBJECT),
    "run.software.reclip-eval": (False, TEXT),
    "run.software.reclip-eval_git": (False, TEXT),
}
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_@.-]+")


def _key(part: str) -> str:
    """A key of the file as the message shows it: quoted when it holds anything unusual (a newline, a space)."""
    return part if _PLAIN_KEY.fullmatch(part) else json.dumps(part)


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value)  # NaN and Infinity as JSON writes them
    except RecursionError:  # nested nearly as deep as the parser allows
        text = f"a deeply nested {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _field_problems(data: dict[str, Any]) -> list[str]:
    problems = []
    for path, (required, (expected, ok)) in FIELDS.items():
        *parents, leaf = path.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):  # the parent is missing or malformed: reported once, as itself
            continue
        if leaf not in node:
            if required:
                problems.append(f"{path}: missing, expected {expected}")
        elif not ok(node[leaf]):
            problems.append(f"{path}: {_shown(node[leaf])}, expected {expected}")
    return problems


def _metric_problems(data: dict[str, Any]) -> list[str]:
    metrics, task = data.get("metrics"), data.get("task")
    if not isinstance(metrics, dict) or not isinstance(task, dict) or not isinstance(task.get("kind"), str):
        return []
    kind = task["kind"]
    undefined_ok = kind in UNDEFINED_KINDS
    expected = "a fraction in [0, 1]" + (f" or {UNDEFINED:g} (undefined)" if undefined_ok else "")
    problems = [] if metrics else ["metrics: empty, expected at least one metric"]
    for name, value in metrics.items():
        if not _finite(value) or not (0 <= value <= 1 or (undefined_ok and value == UNDEFINED)):
            hint = " (a percentage? results hold fractions)" if _finite(value) and 1 < value <= 100 else ""
            problems.append(f"metrics.{_key(name)}: {_shown(value)}, expected {expected}{hint}")
    if kind not in TASK_KINDS.names():
        problems.append(f"task.kind: {_shown(kind)} is no task kind (known: {', '.join(TASK_KINDS.names())})")
    else:
        problems += [f"metrics.{name}: missing, expected the {kind} headline metric"
                     for name in TASK_KINDS.get(kind).headline.metrics if name not in metrics]
    return problems


def validate_results(data: Any, source: str | Path, error: type[ReclipError] = InvalidResultsError,
                     hint: str = "") -> dict[str, Any]:
    """`data` (a parsed results JSON) when it follows the schema; else `error`, one line naming `source` and every
    bad key (the first few, and how many more), with `hint` appended."""
    if not isinstance(data, dict):
        kind = "null" if data is None else type(data).__name__
        raise error(f"{source}: not a results file (the top level is {kind}, expected an object){hint}")
    problems = _field_problems(data) + _metric_problems(data)
    if problems:
        more = f"; and {len(problems) - _MAX_SHOWN} more" if len(problems) > _MAX_SHOWN else ""
        raise error(f"{source}: not a valid results file: {'; '.join(problems[:_MAX_SHOWN])}{more}{hint}")
    return data


def read_results(path: str | Path, error: type[ReclipError] = InvalidResultsError, hint: str = "") -> dict[str, Any]:
    """The results file at `path`, parsed and checked against the schema; `error` naming the file otherwise."""
    try:
        data = read_json(path, error, what="results file", hint=hint)
    except (RecursionError, ValueError, OSError) as e:  # nested too deep, a 5000-digit integer, unreadable
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise error(f"{path}: not a readable results file ({reason}){hint}") from None
    return validate_results(data, path, error, hint)


def is_undefined(value: float) -> bool:
    """A metric with no value (LVIS's -1): shown as n/a, never as a number."""
    return value == UNDEFINED
