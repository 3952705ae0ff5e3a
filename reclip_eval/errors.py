"""The errors users see. Each says what went wrong, where (file, key, tensor), what was expected and how to fix it.

The CLI prints `str(error)` without a traceback for these; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ReclipError(Exception):
    """Base class of every user-facing error."""


class ConfigError(ReclipError):
    """A YAML/JSON config or a `key=value` override is invalid. The message lists every problem found."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config {source}:\n{lines}")


class UnknownNameError(ReclipError):
    """A model, task or recipe name that is not registered; the message lists near matches and how to list all."""


class RefusedTaskError(ReclipError):
    """A task that cannot be evaluated as its suite scores it (its YAML's `refused` says why, in one line)."""


class CheckpointError(ReclipError):
    """A checkpoint that cannot be loaded: missing, truncated, not safetensors, or not matching its config."""


class MissingWeightsError(ReclipError):
    """A named model whose weights were never published and for which no checkpoint was given."""


class DataError(ReclipError):
    """Task data missing or in the wrong layout; the message prints the expected layout and where to get it."""


class HubError(ReclipError):
    """A Hub operation (publishing a checkpoint) that failed: unreachable endpoint, refused request, bad repo id.

    The message is one line naming the repository, the step that failed and the server's or transport's reason."""


class ResultsConflictError(ReclipError):
    """A results file already records another measurement (other weights, data, preprocessing, prompts or
    precision) or other metrics for the same one; the message names the file and what differs."""


def read_json(path: str | Path, error: type[ReclipError] = DataError, *, what: str = "file", hint: str = "") -> Any:
    """The parsed JSON file at `path`; a missing, undecodable or unparsable file raises `error` naming it (`what` names
    the file's role in the not-found message, `hint` is appended to the invalid-JSON one)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder; expected the {what} itself") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e}){hint}") from None


def unique_mapping(entries: Any, source: str | Path, key: str, value: str) -> dict[Any, Any]:
    """`{id: label}` from `(id, label, where)` triples of a label file (`where`: "line 4", "images[3]"). An id given
    twice is refused even when both labels agree: the real files list each id once, so a repeat means a file that
    was concatenated or edited, and of two different labels either choice would relabel silently. The DataError
    names the id, both labels and both places (`key`, `value`: what the file calls them, e.g. "image", "wnid")."""
    mapping: dict[Any, tuple[Any, str]] = {}
    for item, label, where in entries:
        if item in mapping:
            first_label, first_where = mapping[item]
            labels = f"both {value} {label!r}; remove one" if label == first_label else \
                f"{value} {first_label!r} there, {label!r} here; remove the wrong one"
            raise DataError(f"{source}: {where} lists {key} {item!r} again (first at {first_where}; {labels})")
        mapping[item] = (label, where)
    return {item: label for item, (label, _) in mapping.items()}
