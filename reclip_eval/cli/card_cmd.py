"""reclip-eval card CHECKPOINT_DIR --results FILE ...: (re)write the checkpoint's README.md model card."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """example:
  reclip-eval card zoo/reclip-demo --name reclip-demo \\
      --results leaderboards/results/reclip-demo__shapes-zeroshot.json
"""


def add_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reclip-eval card", description="Render a model card.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--name", help="named model (zoo/NAME.yaml) whose description and paper rows to use")
    p.add_argument("--results", nargs="*", default=[], help="results JSON files to include")
    return p


def run(args: argparse.Namespace) -> int:
    import json

    from reclip_eval.atomic import write_text_atomic
    from reclip_eval.cards.render import load_results, render_card
    from reclip_eval.checkpoint import CARD_NAME, TRAINING_NAME, read_config
    from reclip_eval.zoo.entries import load_entry

    config = read_config(args.checkpoint)
    entry = load_entry(args.name) if args.name else None
    training_path = args.checkpoint / TRAINING_NAME
    training = json.loads(training_path.read_text()) if training_path.is_file() else None
    text = render_card(model_name=entry.name if entry else args.checkpoint.name, config=config, entry=entry,
                       training=training, results=load_results(args.results), results_paths=list(args.results))
    write_text_atomic(args.checkpoint / CARD_NAME, text)
    print(args.checkpoint / CARD_NAME)
    return 0
