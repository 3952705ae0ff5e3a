"""Publish a checkpoint directory on the Hugging Face Hub (or any Hub-compatible endpoint: HF_ENDPOINT).

    push_checkpoint("runs/reclip-64", "org/reclip-64")   # -> {"commit_sha": ..., "commit_url": ..., ...}
    push_model(model, "org/reclip-64")                   # a model in memory: saved to a temp folder, then pushed

What is published is the checkpoint format's file list (reclip_eval.checkpoint.HUB_FILES): config.json,
model.safetensors, README.md, recipe.yaml, training.json and results/*.json, plus one `.eval_results/NAME.yaml` per
results file that measured a Hub dataset (the Hub's evaluation-results format: reclip_eval.cards.eval_results).
Nothing else in the directory (resume points, logs, stage sub-checkpoints) leaves the machine. A checkpoint without README.md gets a model card rendered
in memory from its config, training.json and results. Files of those kinds published earlier that the checkpoint
no longer has (e.g. results of older weights, and the `.eval_results/` files written for them) are deleted in the
same commit, so the revision shows exactly this checkpoint; other files in the repo (someone else's `.eval_results/`
files included) are left alone.

Everything goes through huggingface_hub: create_repo(exist_ok=True), create_branch when a new branch is named, one
model_info (the parent commit and the files already there) and ONE create_commit pinned to that parent. The
directory is only read, never written. The token is huggingface_hub's own (the argument, else HF_TOKEN or the stored
login): it is handed to huggingface_hub and never printed, logged or stored, and every form of every token
huggingface_hub could send is scrubbed from error messages (reclip_eval.hub.redact_tokens).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from reclip_eval.checkpoint import (
    CARD_NAME,
    CONFIG_NAME,
    HUB_FILES,
    TRAINING_NAME,
    WEIGHTS_NAME,
    load_model,
    read_config,
    save_checkpoint,
)
from reclip_eval.errors import CheckpointError, HubError, read_json
from reclip_eval.hub import HUB_PREFIX, redact_tokens, repo_id_problem, transport_errors
from reclip_eval.models.clip import CLIP
from reclip_eval.models.config import CLIPConfig

T = TypeVar("T")
COMMIT_STEP = "committing"
COMMIT_SHA = re.compile(r"[0-9a-fA-F]{40}")


def push_checkpoint(
    checkpoint_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Publish `checkpoint_dir` to the model repo `repo_id` ('org/name') as one commit on branch `revision`.

    Returns repo_id, revision, commit_sha, commit_url, repo_url, changed (False when every file was already there
    and no commit was made), files (published), deleted (stale files removed) and eval_results_left_out (results
    path -> why it got no `.eval_results/` file). `private=True` makes a new repo
    private; otherwise the namespace's default visibility applies, and an existing repo keeps its own. Raises
    CheckpointError for a directory that is not a checkpoint (before any request) and HubError, one line, for a repo
    id, revision or request the Hub refuses or cannot be reached for.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants

    repo_id = _check_repo_id(repo_id)
    branch = _check_revision(repo_id, revision or constants.DEFAULT_REVISION)
    directory = Path(checkpoint_dir).expanduser()
    files = publishable_files(directory, repo_id)  # every local check runs before the first request
    evals = _eval_result_files(files, repo_id, branch)
    files = dict(sorted({**files, **evals.files}.items()))
    if constants.is_offline_mode():
        raise HubError(f"{HUB_PREFIX}{repo_id}: cannot push while HF_HUB_OFFLINE=1 is set; unset it to publish")

    api = HfApi(token=token)  # token None: huggingface_hub reads HF_TOKEN or the stored login, per request

    def call(step: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return _hub_call(repo_id, step, token, fn, *args, **kwargs)

    # private=None rather than False: without --private the organisation's default visibility applies.
    repo_url = call("creating the repository", api.create_repo, repo_id, private=private or None, exist_ok=True)
    if branch != constants.DEFAULT_REVISION and not branch.startswith("refs/pr/"):
        call(f"creating branch {branch!r}", api.create_branch, repo_id, branch=branch, exist_ok=True)
    head = call(f"reading branch {branch!r}", api.model_info, repo_id, revision=branch)
    stale = stale_files([s.rfilename for s in head.siblings or []], files)
    operations = [CommitOperationDelete(path_in_repo=p) for p in stale]
    operations += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=source) for p, source in files.items()]
    # create_commit, not upload_folder: with hf_xet installed upload_folder streams through a pipeline that splits
    # large folders (over 100 MB of regular files) into several commits, while a checkpoint must land atomically,
    # and create_commit takes the rendered card from memory. Pinning the parent makes a concurrent push to the
    # same branch fail (HTTP 412) instead of mixing two checkpoints.
    commit = call(COMMIT_STEP, api.create_commit, repo_id, operations=operations, revision=branch,
                  commit_message=commit_message or f"Upload {directory.resolve().name} with reclip-eval",
                  parent_commit=head.sha)
    return {
        "repo_id": repo_id,
        "revision": branch,
        "commit_sha": commit.oid,
        "commit_url": commit.commit_url,
        "repo_url": str(repo_url),
        "changed": commit.oid != head.sha,
        "files": list(files),
        "deleted": stale,
        "eval_results_left_out": evals.left_out,
    }


def push_model(model: CLIP, repo_id: str, **options: Any) -> dict[str, Any]:
    """Publish `model` as a checkpoint (config and weights, card rendered from its config): push_checkpoint on a
    temporary folder, so a model in memory and a saved one go through the same checks and make the same commit."""
    with tempfile.TemporaryDirectory(prefix="reclip-push-") as folder:
        directory = save_checkpoint(model, Path(folder) / "checkpoint")
        return push_checkpoint(directory, repo_id, **options)


# --- what is published ----------------------------------------------------------------------------------------


def publishable_files(directory: Path, repo_id: str) -> dict[str, Path | bytes]:
    """{path in repo: local file, or the rendered card's bytes}, after checking `directory` is a checkpoint."""
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a directory; push a checkpoint directory ({CONFIG_NAME} + "
                              f"{WEIGHTS_NAME})")
    config = read_config(directory)
    # The strict loader `hf-hub:` users will run (every tensor name and shape, safetensors only): a push that
    # passes here downloads into a model that loads.
    load_model(directory)
    files: dict[str, Path | bytes] = {}
    for pattern in HUB_FILES:
        for path in sorted(directory.glob(pattern)):
            if path.is_file():
                files[path.relative_to(directory).as_posix()] = path
    parsed = {name: read_json(path, CheckpointError, hint="; it would be published as is")
              for name, path in files.items() if name.endswith(".json")}
    if CARD_NAME in files:
        _check_utf8(directory / CARD_NAME)  # the Hub validates the card's YAML header as text
    else:
        files[CARD_NAME] = _render_card(directory, repo_id, config, parsed).encode("utf-8")
    return dict(sorted(files.items()))


def stale_files(remote: list[str], published: dict[str, Any]) -> list[str]:
    """Files of the checkpoint's kinds (HUB_FILES) in the repo that this checkpoint does not have, and the
    `.eval_results/` files of results files (published before or now) that this push does not write."""
    from huggingface_hub.utils import filter_repo_objects

    from reclip_eval.cards.eval_results import eval_results_path

    ours = set(filter_repo_objects(remote, allow_patterns=HUB_FILES))
    ours |= {eval_results_path(p) for p in [*remote, *published] if p.startswith("results/")} & set(remote)
    return sorted(p for p in ours if p not in published)


def _eval_result_files(files: dict[str, Path | bytes], repo_id: str, revision: str):
    """The `.eval_results/` files for the results JSON being published (their source links point at those files in
    this revision of the repo)."""
    from urllib.parse import quote

    from huggingface_hub import constants

    from reclip_eval.cards.eval_results import eval_result_files

    results = {name: read_json(path, CheckpointError, hint="; it would be published as is")
               for name, path in files.items() if name.startswith("results/") and isinstance(path, Path)}
    return eval_result_files(results, repo_url=f"{constants.ENDPOINT}/{repo_id}", revision=quote(revision, safe=""))


def _render_card(directory: Path, repo_id: str, config: CLIPConfig, parsed: dict[str, Any]) -> str:
    from reclip_eval.cards.render import render_card

    results_paths = [name for name in parsed if name.startswith("results/")]
    try:
        return render_card(model_name=repo_id, config=config, training=parsed.get(TRAINING_NAME),
                           results=[parsed[name] for name in results_paths], results_paths=results_paths)
    except (KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(
            f"{directory}: has no {CARD_NAME}, and one cannot be rendered from {TRAINING_NAME} / results/*.json "
            f"(missing or malformed entry {e}); write the card first: reclip-eval card {directory}"
        ) from None


def _check_utf8(path: Path) -> None:
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: not UTF-8 text ({e}); a model card must be UTF-8 Markdown") from None


# --- arguments ------------------------------------------------------------------------------------------------


def _check_repo_id(repo_id: str) -> str:
    repo_id = repo_id.removeprefix(HUB_PREFIX)
    problem = repo_id_problem(repo_id)
    if problem is not None:
        raise HubError(f"{repo_id!r}: {problem}")
    return repo_id


def _check_revision(repo_id: str, revision: str) -> str:
    if COMMIT_SHA.fullmatch(revision):
        raise HubError(f"{HUB_PREFIX}{repo_id}: --revision {revision} is a commit sha; a push goes to a branch name")
    return revision


# --- errors ---------------------------------------------------------------------------------------------------


def _one_line(text: str, token: str | None) -> str:
    """`text` on one line with every token huggingface_hub could have sent redacted (a server's error body may echo
    the request's headers)."""
    return " ".join(redact_tokens(text, token).split())


def _hub_call(repo_id: str, step: str, token: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one huggingface_hub call; its HTTP and transport failures become one-line HubErrors naming the step."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    where = f"{HUB_PREFIX}{repo_id}: {step} failed"
    try:
        return fn(*args, **kwargs)
    except HfHubHTTPError as e:  # before transport_errors(): it is an OSError too
        raise HubError(_one_line(f"{where}: {constants.ENDPOINT} answered {_http_reason(e)}{_hint(e, repo_id)}",
                                 token)) from None
    except ValueError as e:  # huggingface_hub's own checks, e.g. "Invalid metadata in README.md"
        raise HubError(_one_line(f"{where}: {type(e).__name__}: {e}", token)) from None
    except transport_errors() as e:
        after = ("the commit may or may not have been made: run the push again (unchanged files are skipped)"
                 if step == COMMIT_STEP else "nothing was published")
        raise HubError(_one_line(f"{where}: cannot reach {constants.ENDPOINT} ({type(e).__name__}: {e}); {after}",
                                 token)) from None


def _http_reason(e: Any) -> str:
    status = e.response.status_code if e.response is not None else "?"
    reason = e.server_message or str(e).strip().splitlines()[0]
    return f"HTTP {status} ({reason})"


def _hint(e: Any, repo_id: str) -> str:
    status = e.response.status_code if e.response is not None else None
    if status in (401, 403):
        return (f"; check that a token with write access to '{repo_id.split('/')[0]}' is set "
                "(HF_TOKEN, or `hf auth login`)")
    if status == 412:
        return "; the branch moved while pushing (another push?): run the push again"
    return ""
