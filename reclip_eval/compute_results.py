"""The compute results file: the rows `reclip-eval flops` counts (GMACs per image-text pair, stage by stage) kept as
data, so that the leaderboard reads a file instead of counting FLOPs while it renders (leaderboards are a function
of results files).

A compute file sits in `compute/` under a results folder, apart from the evaluation results (the `*.json` directly
in that folder, one per model and task, which the leaderboard groups by model), and says `"kind": "compute"`.
Writing follows the evaluation results' rule (reclip_eval/eval/results_store.py): nothing there: written; the same
selection with the same rows (a re-run, perhaps at another commit): the file is kept as it is; anything else:
refused, naming what differs, unless `overwrite`. The command and software versions describe the run, not the
count: they never make a file differ on their own.

Only the standard library and the package's file helpers are imported here: the leaderboard reads these files and
must not pull in the models that count them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from reclip_eval.atomic import write_json_atomic
from reclip_eval.errors import ReclipError, ResultsConflictError, read_json

# Where `reclip-eval --model M --task T` and `reclip-eval flops` write by default: ./results/, which the repository
# git-ignores, so that a first evaluation in a clone changes none of its tracked files. The committed leaderboards'
# results are regenerated with an explicit `--output leaderboards/results`.
DEFAULT_RESULTS_DIR = Path("results")
KIND = "compute"
SCHEMA_VERSION = 1
FOLDER = "compute"
# The default selection: every named model whose zoo entry refers to a paper Table 2 row (the file the leaderboard reads).
TABLE2 = {"models": "paper Table 2"}
_HINT = "pass --overwrite to replace it, or --output DIR to write elsewhere"


def compute_results_path(results_dir: Path, selection: dict[str, str]) -> Path:
    """`compute/table2.json` for the default selection, `compute/model__NAME.json` or `compute/recipe__NAME.json`."""
    if selection == TABLE2:
        name = "table2"
    else:
        (what, value), = selection.items()
        name = f"{what}__{re.sub(r'[^A-Za-z0-9._-]+', '_', value).strip('_')}"
    return results_dir / FOLDER / f"{name}.json"


def build_compute_results(selection: dict[str, str], rows: list[dict[str, Any]], *, command: str,
                          software: dict[str, str]) -> dict[str, Any]:
    return {"kind": KIND, "schema_version": SCHEMA_VERSION, "selection": selection, "rows": rows,
            "run": {"command": command, "software": software}}


def read_compute_results(path: Path, error: type[ReclipError] = ResultsConflictError) -> dict[str, Any]:
    """The compute file at `path`; `error` (naming the file) when it is missing, unreadable or of another kind."""
    data = read_json(path, error, what="compute results file")
    if not isinstance(data, dict) or data.get("kind") != KIND or not isinstance(data.get("rows"), list):
        raise error(f"{path}: not a compute results file (no \"kind\": \"{KIND}\" with rows)")
    return data


def _row_key(row: dict[str, Any]) -> str:
    return f"{row['model']} {row['stage']}"


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)  # a NaN equals itself, a tuple its list


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What makes two compute files count different things: the selection, or any row (by model and stage)."""
    found = []
    if _json(old.get("selection")) != _json(new["selection"]):
        found.append(f"selection: {_json(old.get('selection'))} in the file, {_json(new['selection'])} in this run")
    old_rows = {_row_key(r): r for r in old["rows"]}
    new_rows = {_row_key(r): r for r in new["rows"]}
    for key in sorted(old_rows.keys() | new_rows.keys()):
        before, after = old_rows.get(key), new_rows.get(key)
        if before is None or after is None:
            found.append(f"{key}: only {'in this run' if before is None else 'in the file'}")
            continue
        found += [f"{key} {field}: {_json(before.get(field))} in the file, {_json(after.get(field))} in this run"
                  for field in sorted(before.keys() | after.keys()) if _json(before.get(field)) != _json(after.get(field))]
    if not found and [_row_key(r) for r in old["rows"]] != [_row_key(r) for r in new["rows"]]:
        found.append("rows: the same rows in another order")
    return found


def store_compute_results(results: dict[str, Any], path: Path, *, overwrite: bool = False
                          ) -> tuple[Literal["written", "kept", "replaced"], list[str]]:
    """Write `results` atomically unless the file there counts something else (module docstring); returns what
    happened and, for "replaced", what differed."""
    if not path.is_file():
        write_json_atomic(path, results)
        return "written", []
    try:
        found = differences(read_compute_results(path), results)
    except ResultsConflictError as e:
        if not overwrite:
            raise ResultsConflictError(f"{e}; not replaced: {_HINT}") from None
        found = ["it was not a readable compute results file"]
    if not found and not overwrite:
        return "kept", []
    if not overwrite:
        raise ResultsConflictError(f"{path}: holds other compute rows ({'; '.join(found)}); not replaced: {_HINT}")
    write_json_atomic(path, results)
    return "replaced", found
