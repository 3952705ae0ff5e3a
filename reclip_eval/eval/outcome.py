"""What a task run hands back to the results writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TaskOutcome:
    metrics: dict[str, float]
    counts: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    prompts: dict[str, Any] | None = None
    data_files: list[Path] = field(default_factory=list)  # fingerprinted into the results
    extra: dict[str, Any] = field(default_factory=dict)
