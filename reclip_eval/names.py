"""The one near-match helper behind every "did you mean" (registries, named YAML files, config keys)."""

from __future__ import annotations

import difflib


def near_matches(name: str, known: list[str], *, n: int = 3, cutoff: float = 0.5) -> list[str]:
    """Up to `n` of `known` that look like a mistyping of `name`, closest first. Names chosen from a list (tasks,
    models, kinds) use a loose cutoff; a config key, whose valid set is listed instead when nothing is close, uses
    difflib's default (0.6) and one suggestion."""
    return difflib.get_close_matches(name, known, n=n, cutoff=cutoff)
