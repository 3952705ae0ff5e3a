"""reclip-eval push-to-hub CHECKPOINT_DIR org/name: publish a checkpoint directory as one commit on the Hub."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

EPILOG = """Publishes config.json, model.safetensors, README.md (rendered from the checkpoint when missing), recipe.yaml,
training.json and results/*.json, and the Hub's .eval_results/NAME.yaml for each results file that measured a Hub
dataset (hf-datasets:ID, or a paper task's CLIP_benchmark set); nothing else in the directory. The token is huggingface_hub's: HF_TOKEN, or the
login stored by `hf auth login`. HF_ENDPOINT points at another Hub-compatible server.

example:
  reclip-eval push-to-hub runs/reclip-64 myorg/reclip-64 --private
  reclip-eval --model hf-hub:myorg/reclip-64 --task shapes-zeroshot
"""


def add_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reclip-eval push-to-hub", description="Publish a checkpoint on the Hub.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="checkpoint directory (config.json + model.safetensors)")
    p.add_argument("repo_id", help="Hub model repo, org/name (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its "
                                                          "visibility)")
    p.add_argument("--revision", help="branch to commit to (created from main if missing; default main)")
    p.add_argument("--commit-message", help="commit summary (default: 'Upload DIR with reclip-eval')")
    return p


def run(args: argparse.Namespace) -> int:
    from reclip_eval.hub import HUB_PREFIX
    from reclip_eval.publish import push_checkpoint

    # The CLI logs at INFO; httpx2 would add a line per request, and the summary below says what happened.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    pushed = push_checkpoint(args.checkpoint, args.repo_id, private=args.private, revision=args.revision,
                             commit_message=args.commit_message)
    where = f"{pushed['repo_id']}@{pushed['revision']}"
    if pushed["changed"]:
        deleted = f", deleted {', '.join(pushed['deleted'])}" if pushed["deleted"] else ""
        print(f"pushed {args.checkpoint} to {where}: {', '.join(pushed['files'])}{deleted}")
    else:
        print(f"{where} already holds {args.checkpoint}: no new commit")
    for path, why in pushed["eval_results_left_out"].items():
        print(f"no .eval_results file for {path}: {why}")
    print(f"commit: {pushed['commit_sha']}")
    print(f"url:    {pushed['commit_url']}")
    print(f"load:   --model {HUB_PREFIX}{pushed['repo_id']}@{pushed['commit_sha']}")
    return 0
