"""Shared by the benchmark scripts (run as `python benchmarks/NAME.py`, so this folder is on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit_report(report: dict[str, Any], out: Path | None) -> int:
    """Print the report as JSON and, with --out, write it atomically (for committing under benchmarks/results)."""
    print(json.dumps(report, indent=2))
    if out:
        from reclip_eval.atomic import write_json_atomic

        write_json_atomic(out, report)
    return 0
