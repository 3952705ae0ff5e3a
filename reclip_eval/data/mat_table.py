"""Read one table of a MATLAB file (the devkit's meta.mat) in a child process.

scipy's MAT reader can crash the interpreter on a damaged file (a segmentation fault in its compiled reader, found
by tests/test_reader_fuzz.py on a corrupted meta.mat), which would end an evaluation with no message at all. In a
child process a crash is one more reason for a one-line error. The child prints the table as JSON: its field names
and, per row, each field's value as a JSON number or string (anything else as `{"other": repr}`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from reclip_eval.errors import DataError


def read_mat_table(path: Path, table: str, fields: tuple[str, ...], expected: str) -> list[dict[str, Any]]:
    """The rows of the struct array `table` in the MAT file `path`, as {field: value} for `fields`; a file that
    cannot be read, lacks the table or a field raises one DataError naming it (`expected`: what the file should
    be, for the message)."""
    child = subprocess.run([sys.executable, "-m", "reclip_eval.data.mat_table", str(path), table, *fields],
                           capture_output=True, text=True, timeout=600)
    if child.returncode != 0:
        last = (child.stderr.strip().splitlines() or [f"the reader died with signal {-child.returncode}"])[-1]
        raise DataError(f"{path}: not a readable MAT file ({last[:200]}); expected {expected}")
    found = json.loads(child.stdout)
    if "error" in found:
        raise DataError(f"{path}: {found['error']}; expected {expected}")
    return found["rows"]


def _cell(value: Any) -> Any:
    import numpy as np

    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return {"other": repr(value)[:60]}


def _main(path: str, table: str, *fields: str) -> None:
    from scipy.io import loadmat

    try:
        rows = loadmat(path, squeeze_me=True).get(table)
    except Exception as e:  # noqa: BLE001  scipy's reader raises many types on bytes that are no MAT file
        print(json.dumps({"error": f"not a readable MAT file ({type(e).__name__}: {str(e)[:200]})"}))
        return
    names = getattr(getattr(rows, "dtype", None), "names", None) or ()
    missing = [name for name in fields if name not in names]
    if rows is None or missing or rows.ndim != 1:
        what = f"no {table!r} table" if rows is None else f"the {table} table lacks {', '.join(missing) or 'rows'}"
        print(json.dumps({"error": f"{what} (fields {', '.join(fields)})"}))
        return
    print(json.dumps({"rows": [{name: _cell(row[name]) for name in fields} for row in rows]}))


if __name__ == "__main__":
    _main(*sys.argv[1:])
