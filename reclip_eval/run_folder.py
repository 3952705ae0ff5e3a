"""Output folders of runs (`train --out`, `detect train --out`): a run writes only into a new or empty folder or
into one of its own runs, and never deletes what it did not write.

A run marks its folder when it starts with `run.json` (`{"kind": ..., "status": "running" | "finished", ...}`);
that marker is what makes a folder "one of our runs" (folders written before the marker existed are recognised by
their files, see the callers). A user's files beside a run's own are left alone: runs write their files one by one
and replace only their own sub-folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reclip_eval.atomic import write_json_atomic
from reclip_eval.errors import ReclipError

MARKER = "run.json"


class RunFolderError(ReclipError):
    """An output folder that a run must not write into (or a --resume that has nothing to continue)."""


def entries(path: str | Path) -> list[str]:
    """What `path` holds, folders with a trailing slash (empty when it does not exist)."""
    path = Path(path)
    if not path.is_dir():
        return []
    return sorted(f"{p.name}/" if p.is_dir() else p.name for p in path.iterdir())


def describe(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """The run marker of folder `path`, or None when it has none."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFolderError(f"{marker}: the run marker is not valid JSON ({e}); the folder was left as it is") \
            from None
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise RunFolderError(f"{marker}: not a reclip-eval run marker (expected a JSON object with 'kind'); the "
                             "folder was left as it is")
    return data


def write_marker(path: str | Path, kind: str, status: str, **info: Any) -> None:
    Path(path).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(path) / MARKER, {"kind": kind, "status": status, **info})


def refuse_foreign(path: str | Path, kind: str, *, looks_like_ours: bool = False, choices: str) -> bool:
    """Raise unless `path` is new, empty, or a run folder of `kind` (marked, or `looks_like_ours` for folders
    written before markers). Returns whether it is one of our runs. `choices` ends the message (what to do)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{path}: is a file, not a folder; {choices}")
    names = entries(path)
    if not names:
        return False
    marker = read_marker(path)
    if (marker is not None and marker["kind"] == kind) or (marker is None and looks_like_ours):
        return True
    what = f"a {marker['kind']} run" if marker is not None else "not a folder this command wrote"
    raise RunFolderError(f"{path}: is not empty and is {what} (it holds {describe(names)}); nothing in it was "
                         f"touched; {choices}")
