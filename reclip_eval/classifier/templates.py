"""Prompt-template files (one template per line, `{}` where the class name goes) and the fingerprint of the prompts
that a results file records, so that a number is never reported without the prompts that produced it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from reclip_eval.errors import DataError


def read_templates(path: Path, *, not_found_hint: str = "") -> list[str]:
    """The non-blank lines of `path`, stripped; each must hold exactly one `{}`. `not_found_hint` is appended to the
    missing-file error (say, what the path is relative to)."""
    if not path.is_file():
        raise DataError(f"{path}: prompt template file not found" + (f" ({not_found_hint})" if not_found_hint else ""))
    templates = [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
    bad = [f"line {i + 1}: {t!r}" for i, t in enumerate(templates) if t.count("{}") != 1]
    if bad:
        raise DataError(f"{path}: every template needs exactly one '{{}}' for the class name:\n  " + "\n  ".join(bad))
    if not templates:
        raise DataError(f"{path}: no templates")
    return templates


def _sha256_lines(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def prompts_record(templates: Sequence[str], class_names: Sequence[str]) -> dict[str, int | str]:
    """The results JSON's `prompts` block: how many templates, and the sha256 of the templates and of the class
    names (newline-joined, in classifier order)."""
    return {"templates": len(templates), "templates_sha256": _sha256_lines(templates),
            "classnames_sha256": _sha256_lines(class_names)}
