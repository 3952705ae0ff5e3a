"""Writing a results file without losing one.

A results file is the record of one measurement: these weights (sha256), with this preprocessing, tokenizer and
precision, on this data (fingerprint) with these prompts. Writing a run's results where a file already is:

- nothing there: write it;
- the same measurement with the same metrics (a re-run, e.g. the README's first command in a clone, whose committed
  file holds exactly what it measures): keep the existing file untouched, so nothing but a timestamp would change;
- another measurement (other weights, data, preprocessing, prompts or precision), or the same one with other
  metrics: refuse, naming the file and what differs, unless `overwrite`, and then say what was replaced.

The same measurement with other metrics is refused rather than kept or replaced: either choice would hide that the
number did not reproduce (other software, device or a nondeterministic kernel); the message names the metric and
what else differs in the run, and `--overwrite` records the new number deliberately.

Locations (data folder, checkpoint folder), the command line, wall time and software versions describe the run, not
the measurement: they never make a file "another measurement" on their own.

"Nothing there: write it" is one step, not a check followed by a write: the file is created exclusively
(reclip_eval/atomic.py `create_text_exclusive`), so of two runs finishing at the same moment exactly one writes
and the other then meets its file under the rules above (kept when it measured the same, refused otherwise).
Both the file found and the results to be written must follow the results schema (results_schema.py): nothing
is compared with, or written as, a file the leaderboard would refuse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reclip_eval.atomic import create_text_exclusive, write_text_atomic
from reclip_eval.errors import ResultsConflictError
from reclip_eval.eval.results import results_filename
from reclip_eval.eval.results_schema import read_results, validate_results

# What the measurement was, as dotted paths into a results JSON: the model side is known before anything is
# evaluated (checked then, so a doomed run does not spend its time), the data side only after.
MODEL_SIDE = ("model.id", "model.family", "model.architecture", "model.backend", "model.weights.sha256",
              "model.image_size", "model.preprocess", "model.tokenizer", "model.pos_embed_resample", "precision")
DATA_SIDE = ("task.name", "task.kind", "task.data_fingerprint", "task.split", "task.layout", "prompts",
             "decode")  # decode: absent (full) or "draft" (data/decode.py), how the images were decoded
# Shown beside differing metrics: the likely reasons a same measurement gave another number.
RUN_CONTEXT = ("run.device", "run.software")
_ABSENT = "<absent>"
_HINT = "pass --overwrite to replace it, or --output DIR to write elsewhere"


@dataclass(frozen=True)
class Stored:
    path: Path
    action: Literal["written", "kept", "replaced", "skipped"]  # skipped: measured before, not evaluated again
    replaced: tuple[str, ...] = ()  # with "replaced": what differed in the file that was replaced


def results_path(results: dict[str, Any], output_dir: str | Path, *, per_image_size: bool = False,
                 tag_weights: bool = False) -> Path:
    """Where a run's results go: one file per (model, task), per image size in a resolution sweep, and per weights
    when `tag_weights` (a named model evaluated with other weights must not take the named model's file)."""
    model = results["model"]
    size = model["image_size"] if per_image_size else None
    sha = (model.get("weights") or {}).get("sha256") if tag_weights else None
    return Path(output_dir) / results_filename(model["id"], results["task"]["name"], size, weights_sha256=sha,
                                               backend=model.get("backend"))


def _lookup(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return _ABSENT
        data = data[part]
    return data


def _same(a: Any, b: Any) -> bool:
    # Through JSON, so a NaN metric equals itself and a tuple its list.
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if value is not _ABSENT else value
    return text if len(text) <= 80 else text[:77] + "..."


def _leaf_differences(old: Any, new: Any, where: str) -> list[str]:
    """`where.key: OLD in the file, NEW in this run` for each differing leaf (dicts compared key by key)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in sorted(set(old) | set(new), key=str)
                for d in _leaf_differences(old.get(key, _ABSENT), new.get(key, _ABSENT), f"{where}.{key}")]
    if where.endswith("weights.sha256") and old is None and new is None:
        return [f"{where}: none on either side (unfingerprinted weights cannot be shown to be the same)"]
    if _same(old, new):
        return []
    return [f"{where}: {_short(old)} in the file, {_short(new)} in this run"]


def differences(old: dict[str, Any], new: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    return [d for field in fields for d in _leaf_differences(_lookup(old, field), _lookup(new, field), field)]


def _read_existing(path: Path) -> dict[str, Any]:
    return read_results(path, ResultsConflictError, hint=f"; not replaced: {_HINT}")


def check_before_run(path: Path, model: dict[str, Any], precision: str, *, overwrite: bool = False) -> None:
    """Refuse before evaluating when the file there records other weights, preprocessing or precision."""
    if overwrite or not path.is_file():
        return
    found = differences(_read_existing(path), {"model": model, "precision": precision}, MODEL_SIDE)
    if found:
        raise ResultsConflictError(f"{path}: holds a measurement of another model setup ({'; '.join(found)}); "
                                   f"not replaced: {_HINT}")


# What a run will record that is known before it reads the data (eval/resume.py): the model side, the task's spec
# and where and how its data is laid out; the prompts too where the task has them.
PLANNED_SIDE = MODEL_SIDE + ("task.name", "task.kind", "task.spec_sha256", "task.data_dir", "task.split",
                             "task.layout", "decode")


def measured_before(path: Path, planned: dict[str, Any]) -> dict[str, Any] | None:
    """The results file at `path` when it records the measurement `planned` (the PLANNED_SIDE fields, and the
    prompts when `planned` has them) with metrics, else None: a resumed suite does not evaluate it again. A file
    that is not a valid results file is not a measurement (the run then meets it under store_results' rules)."""
    try:
        found = read_results(path, ResultsConflictError)
    except ResultsConflictError:
        return None
    fields = PLANNED_SIDE + (("prompts",) if "prompts" in planned else ())
    return None if differences(found, planned, fields) else found


def store_results(results: dict[str, Any], path: Path, *, overwrite: bool = False) -> Stored:
    """Write `results` to `path` unless the file there records another measurement or other metrics (module
    docstring); a re-run of the same measurement with the same metrics keeps the file as it is. A new file is
    created exclusively, a replaced one (`overwrite`) atomically: a reader never sees half a file."""
    validate_results(results, f"results of this run for {path}")
    text = json.dumps(results, indent=2) + "\n"
    if not overwrite:
        if create_text_exclusive(path, text):
            return Stored(path, "written")
        old = _read_existing(path)  # the file already there, or the one a concurrent run just created
        measured, metrics = _measurement_and_metric_differences(old, results)
        if measured:
            raise ResultsConflictError(f"{path}: holds another measurement ({'; '.join(measured)}); "
                                       f"not replaced: {_HINT}")
        if metrics:
            context = differences(old, results, RUN_CONTEXT)
            raise ResultsConflictError(f"{path}: holds the same measurement with other metrics "
                                       f"({'; '.join(metrics)})"
                                       + (f"; the runs differ in {'; '.join(context)}" if context else "")
                                       + f"; not replaced: {_HINT}")
        return Stored(path, "kept")
    existed = path.is_file()  # only for the summary line: with overwrite, whatever is there is replaced
    old = _read_or_none(path) if existed else None
    write_text_atomic(path, text)
    if not existed:
        return Stored(path, "written")
    if old is None:
        return Stored(path, "replaced", ("it was not a valid results file",))
    return Stored(path, "replaced", tuple(sum(_measurement_and_metric_differences(old, results), [])))


def _measurement_and_metric_differences(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    return differences(old, new, MODEL_SIDE + DATA_SIDE), _leaf_differences(old["metrics"], new["metrics"], "metrics")


def _read_or_none(path: Path) -> dict[str, Any] | None:
    """The file being overwritten, for saying what it held; None when it is no readable results file."""
    try:
        return _read_existing(path)
    except ResultsConflictError:
        return None


def describe_stored(stored: Stored) -> str:
    """What happened to the results file, for the run's summary line."""
    if stored.action == "kept":
        return f"already measured, kept: {stored.path}"
    if stored.action == "skipped":
        return f"already measured, not evaluated again: {stored.path}"
    if stored.action == "replaced":
        what = "; ".join(stored.replaced) if stored.replaced else "same measurement, same metrics"
        return f"replaced {stored.path} ({what})"
    return f"written: {stored.path}"
