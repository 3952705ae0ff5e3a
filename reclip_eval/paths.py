"""Where the project's data folders (`zoo/`, `tasks/`, `training/`, `leaderboards/`) and caches live.

In a source checkout (editable install) the folders sit beside the package; a wheel carries copies under
`reclip_eval/_data/` (hatchling `force-include`). An environment variable per folder points at a user's own copy.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
# zoo: the named models (one entry YAML each, reclip_eval/zoo/entries.py), not Hub model cards (reclip_eval/cards/).
DATA_FOLDERS = ("zoo", "tasks", "training", "leaderboards")
_ENV = {name: f"RECLIP_{name.upper()}_DIR" for name in DATA_FOLDERS}


def data_folder(name: str) -> Path:
    """The folder `name` (one of DATA_FOLDERS): `$RECLIP_<NAME>_DIR`, else the checkout's, else the wheel's copy."""
    if name not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {name!r}; expected one of {DATA_FOLDERS}")
    override = os.environ.get(_ENV[name])
    if override:
        return Path(override).expanduser().resolve()
    checkout = _PACKAGE_DIR.parent / name
    if checkout.is_dir() and (_PACKAGE_DIR.parent / "pyproject.toml").is_file():
        return checkout
    return _PACKAGE_DIR / "_data" / name


def cache_dir() -> Path:
    """Root for generated data and caches: `$RECLIP_CACHE`, else `$XDG_CACHE_HOME/reclip_eval`, else ~/.cache."""
    env = os.environ.get("RECLIP_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "reclip_eval"


def default_data_dir() -> Path:
    """Where task data is looked for when `--data-dir` is not given: `$RECLIP_DATA`, else `<cache>/data`."""
    env = os.environ.get("RECLIP_DATA")
    return Path(env).expanduser() if env else cache_dir() / "data"
