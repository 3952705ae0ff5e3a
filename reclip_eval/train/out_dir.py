"""What `reclip-eval train RECIPE --out DIR [--resume]` may do with DIR, decided before data or a model is touched.

    new or empty folder          a new run starts (with --resume: nothing to resume, stop)
    one of our runs, finished    stop: say where its model is
    one of our runs, unfinished  --resume continues it; without --resume: stop (its progress would be lost)
    one of our runs, no progress a new run starts there (a run killed before its first resume point)
    anything else                stop: name what is there; nothing in it is touched

The run's own entries in DIR are the names below; everything else in DIR belongs to the user and is never deleted.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reclip_eval.atomic import clean_stale, retire_dir
from reclip_eval.checkpoint import CARD_NAME, CONFIG_NAME, RECIPE_NAME, TRAINING_NAME, WEIGHTS_NAME
from reclip_eval.run_folder import MARKER, RunFolderError, read_marker, refuse_foreign, write_marker
from reclip_eval.train.metrics_log import WANDB_ID_FILE
from reclip_eval.train.resume import RESUME_DIR, list_resume_points, unusable_reason

log = logging.getLogger(__name__)
KIND = "reclip-eval train"
STAGES_DIR = "stages"
OWN_NAMES = frozenset({CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, RECIPE_NAME, TRAINING_NAME, MARKER, WANDB_ID_FILE,
                       RESUME_DIR, STAGES_DIR, "tensorboard", "wandb"})
_CHOICES = "choose a new or empty --out (--resume continues a run only in the folder that run wrote)"


def _finished(out: Path) -> bool:
    marker = read_marker(out)
    if marker is not None:
        return marker.get("status") == "finished"
    # Runs written before the marker: the final checkpoint is the only thing they left at the end.
    return all((out / name).is_file() for name in (CONFIG_NAME, WEIGHTS_NAME, TRAINING_NAME))


def _newest_intact_point(out: Path) -> str | None:
    return next((p.path.name for p in reversed(list_resume_points(out)) if unusable_reason(p) is None), None)


def open_out_dir(out: Path, *, resume: bool) -> None:
    """Refuse `out` when this run must not write there. Only looks: every process calls it, and all of them must
    have looked before the first one writes (the caller's barrier), or one would see the other's first file."""
    out = Path(out)
    ours = refuse_foreign(out, KIND, looks_like_ours=bool(list_resume_points(out)) or _finished(out),
                          choices=_CHOICES)
    if ours and _finished(out):
        what = "nothing to resume" if resume else "nothing was changed"
        raise RunFolderError(f"{out}: holds a finished run (its model: {out / WEIGHTS_NAME}); {what}; evaluate it "
                             f"with `reclip-eval --model {out} --task TASK`, or train into another --out")
    if resume and not ours:
        state = "does not exist" if not out.exists() else "is empty"
        raise RunFolderError(f"{out}: nothing to resume: the folder {state}; check --out (without --resume a new "
                             "run starts there)")
    if resume and not list_resume_points(out):
        raise RunFolderError(f"{out}: nothing to resume: no resume point in {out / RESUME_DIR} (the run stopped "
                             "before writing one); start it again without --resume")
    latest = None if resume or not ours else _newest_intact_point(out)
    if latest is not None:
        raise RunFolderError(f"{out}: holds an unfinished run (latest resume point: {RESUME_DIR}/{latest}); continue "
                             "it with --resume, or choose another --out; nothing was changed")


def start_run(out: Path, recipe_name: str, *, resume: bool) -> None:
    """Mark `out` as this run's folder (main process, after `open_out_dir`). A new run first retires the damaged
    resume points a killed earlier run left there (intact ones were refused by `open_out_dir`). What killed saves
    left in our own entries is cleaned first."""
    for folder, names in ((out, OWN_NAMES.__contains__), (out / RESUME_DIR, None), (out / STAGES_DIR, None)):
        for action in clean_stale(folder, names):
            log.info("left by an interrupted save: %s", action)
    if not resume:
        for point in list_resume_points(out):
            log.warning("removing the damaged resume point %s (%s)", point.path, unusable_reason(point))
            retire_dir(point.path)
    write_marker(out, KIND, "running", recipe=recipe_name)


def finish_run(out: Path, recipe_name: str) -> None:
    """After the final checkpoint: mark the run finished, then drop its resume points (the final checkpoint
    supersedes them; marked first, so a kill in between still leaves a finished run)."""
    write_marker(out, KIND, "finished", recipe=recipe_name)
    retire_dir(Path(out) / RESUME_DIR)
