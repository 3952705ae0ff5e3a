"""Hub transport: `hf-hub:` specs, snapshot downloads pinned to a commit, and the errors a request can raise.

    download_snapshot("org/name", revision="v1", allow_patterns=["config.json", "model.safetensors"])

Downloads go through huggingface_hub, which reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE (the HF cache answers
offline). This module knows no checkpoint format: callers say which files to fetch (reclip_eval.checkpoint for our
checkpoints, reclip_eval.zoo.resolve for any supported kind). Publishing, which renders model cards, is
reclip_eval.publish.

Tokens: whatever huggingface_hub would send (the token argument, HF_TOKEN / HUGGING_FACE_HUB_TOKEN, the stored
login under HF_HOME) is handed to it and never printed: every message built from a request's failure goes through
`redact_tokens`, since a server's error body may echo the request's headers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
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


REDACTED = "***"


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """'hf-hub:org/name@rev' -> ('org/name', 'rev')."""
    body = spec[len(HUB_PREFIX):] if spec.startswith(HUB_PREFIX) else spec
    repo, _, revision = body.partition("@")
    return repo, revision or None


def repo_id_problem(repo_id: str) -> str | None:
    """Why `repo_id` (said by the caller) is no Hub model repo id of the form 'org/name' (huggingface_hub's own rules), None if it is."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if repo_id.count("/") != 1:
        return "expected a Hub model repo id of the form 'org/name'"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        return f"not a valid Hub repo id ({' '.join(str(e).split())})"
    return None


def token_forms(token: str | bool | None = None) -> list[str]:
    """Every token huggingface_hub could send with a request, each as stored and as sent (stripped of spaces and
    newlines), longest first: the `token` argument, HF_TOKEN and HUGGING_FACE_HUB_TOKEN, the stored login (the token
    file and the stored tokens under HF_HOME) and what huggingface_hub.get_token() resolves to."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.utils import get_stored_tokens

    found: list[str | None] = [token if isinstance(token, str) else None, os.environ.get("HF_TOKEN"),
                               os.environ.get("HUGGING_FACE_HUB_TOKEN")]
    try:
        found.append(Path(constants.HF_TOKEN_PATH).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        pass
    try:
        found += get_stored_tokens().values()
        found.append(get_token())
    except Exception:  # noqa: BLE001 - a broken login file or token exchange: the forms found so far still count
        pass
    return sorted(_written_forms(found), key=len, reverse=True)


def _written_forms(tokens: Iterable[str | None]) -> set[str]:
    forms = set()
    for token in tokens:
        if token:
            # huggingface_hub sends a token without its newlines and outer spaces (utils._auth._clean_token)
            forms |= {token, token.strip(), token.replace("\r", "").replace("\n", "").strip()}
    return {form for form in forms if form}


def redact_tokens(text: str, token: str | bool | None = None) -> str:
    """`text` with every form of every token huggingface_hub could send (`token_forms`) replaced by ***."""
    for form in token_forms(token):
        text = text.replace(form, REDACTED)
    return text


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
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{HUB_PREFIX}{repo_id}"
    problem = repo_id_problem(repo_id)
    if problem is not None:
        raise CheckpointError(f"{where}: {problem}")
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
    except LocalEntryNotFoundError as e:
        cache = cache_dir or constants.HF_HUB_CACHE
        why = "offline (HF_HUB_OFFLINE=1)" if offline else "the Hub could not be reached"
        if not offline and e.__cause__ is not None:  # what the Hub answered (or the transport said) instead
            why += f" ({type(e.__cause__).__name__}: {e.__cause__})"
        message = f"{where}{'@' + revision if revision else ''}: not in the Hugging Face cache at {cache} and {why}"
        raise CheckpointError(redact_tokens(" ".join(message.split()), token)) from None
    except HFValidationError as e:  # a revision or file name huggingface_hub refuses
        raise CheckpointError(f"{where}: {' '.join(str(e).split())}") from None
    except HfHubHTTPError as e:  # its message may quote the server's body, which may echo the request's headers
        reason = " ".join(f"{e.__class__.__name__}: {e}".split())
        raise CheckpointError(redact_tokens(f"{where}: download failed ({reason})", token)) from None
    except transport_errors() as e:
        raise CheckpointError(redact_tokens(f"{where}: cannot reach {constants.ENDPOINT} ({e})", token)) from None
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
