"""The results JSON: one file per (model, task) run, carrying everything needed to reproduce its numbers."""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
_PACKAGES = ("reclip-eval", "torch", "torchvision", "numpy", "pillow", "open_clip_torch", "huggingface_hub")


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    commit = _git_commit()
    if commit:
        versions["reclip-eval_git"] = commit
    return versions


def _git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def fingerprint_files(paths: list[Path], root: Path) -> str:
    """sha256 over the sorted (relative path, size) pairs: cheap, and changes when files are added or replaced."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        try:
            rel = path.relative_to(root)
        except ValueError:
            rel = path
        size = path.stat().st_size if path.exists() else -1
        digest.update(f"{rel.as_posix()}\t{size}\n".encode())
    return digest.hexdigest()


def results_filename(model_id: str, task: str, image_size: int | None = None, *,
                     weights_sha256: str | None = None, backend: str | None = None) -> str:
    """`MODEL__TASK.json`, `MODEL__TASK__64px.json` in a resolution sweep; `MODEL@SHA12__...` names the weights
    when they are not the model's own (`--checkpoint` for a named model), so other weights never take its file;
    `...__jax.json` for another backend than torch (`--backend jax`), so the two never take each other's file."""
    slug = re.sub(r"[^A-Za-z0-9._@-]+", "_", model_id).strip("_")
    weights = f"@{weights_sha256[:12]}" if weights_sha256 else ""
    size = f"__{image_size}px" if image_size else ""
    other_backend = f"__{backend}" if backend and backend != "torch" else ""
    return f"{slug}{weights}__{task}{size}{other_backend}.json"


def build_results(
    *,
    task: dict[str, Any],
    model: dict[str, Any],
    metrics: dict[str, float],
    counts: dict[str, Any],
    skipped: list[dict[str, str]],
    prompts: dict[str, Any] | None,
    precision: str,
    device: str,
    wall_time_s: float,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "model": model,
        "precision": precision,
        "prompts": prompts,
        "metrics": metrics,
        "counts": counts,
        "skipped": skipped,
        "run": {
            "command": " ".join(["reclip-eval", *(argv if argv is not None else sys.argv[1:])]),
            "device": device_name(device),
            "wall_time_s": round(wall_time_s, 3),
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "software": software_versions(),
        },
    }
