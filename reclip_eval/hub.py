"""Hub transport: `hf-hub:` specs, snapshot downloads pinned to a commit, and the errors a request can raise.

    download_snapshot("org/name", revision="v1", allow_patterns=["config.json", "model.safetensors"])

Downloads go through huggingface_hub, which reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE (the HF cache answers
offline). This module knows no checkpoint format: callers say which files to fetch (reclip_eval.checkpoint for our
checkpoints, reclip_eval.zoo.resolve for any supported kind). Publishing, which renders model cards, is
reclip_eval.publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reclip_eval.errors import CheckpointError

HUB_PREFIX = "hf-hub:"


@dataclass(frozen=True)
class CheckpointSource:
    """Where a checkpoint came from: a local directory, or a Hub repo pinned to the commit that was resolved."""

    path: Path
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """'hf-hub:org/name@rev' -> ('org/name', 'rev')."""
    body = spec[len(HUB_PREFIX):] if spec.startswith(HUB_PREFIX) else spec
    repo, _, revision = body.partition("@")
    return repo, revision or None


def download_snapshot(
    repo_id: str,
    *,
    allow_patterns: list[str],
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> CheckpointSource:
    """Download (or, offline, find in the HF cache) the files of a Hub model repo; the commit is pinned.

    `allow_patterns` is required: a repo may hold pickles or other large files that must never be fetched."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{HUB_PREFIX}{repo_id}"
    offline = constants.HF_HUB_OFFLINE or local_files_only
    try:
        snapshot = snapshot_download(
            repo_id=repo_id,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
            allow_patterns=allow_patterns,
        )
    except RepositoryNotFoundError:
        raise CheckpointError(f"{where}: repository not found (or private and no token)") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{where}: revision {revision!r} not found") from None
    except LocalEntryNotFoundError:
        cache = cache_dir or constants.HF_HUB_CACHE
        why = "offline (HF_HUB_OFFLINE=1)" if offline else "the Hub could not be reached"
        raise CheckpointError(
            f"{where}{'@' + revision if revision else ''}: not in the Hugging Face cache at {cache} and {why}"
        ) from None
    except HfHubHTTPError as e:
        raise CheckpointError(f"{where}: download failed ({e.__class__.__name__}: {e})") from None
    except transport_errors() as e:
        raise CheckpointError(f"{where}: cannot reach {constants.ENDPOINT} ({e})") from None
    snapshot_path = Path(snapshot)
    commit = snapshot_path.name if snapshot_path.parent.name == "snapshots" else None
    return CheckpointSource(path=snapshot_path, repo_id=repo_id, revision=revision or "main", commit=commit)


def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection errors of the HTTP library under huggingface_hub (httpx2's ConnectError is no HfHubHTTPError)."""
    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx", "requests"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        base = getattr(mod, "HTTPError", None) or getattr(getattr(mod, "exceptions", None), "RequestException", None)
        if isinstance(base, type):
            errors.append(base)
    return tuple(errors)
