"""reclip-eval card CHECKPOINT_DIR --results FILE ...: (re)write the checkpoint's README.md model card."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  reclip-eval card zoo/reclip-demo --name reclip-demo \\
      --results leaderboards/results/reclip-demo__shapes-zeroshot.json
  reclip-eval card runs/mine --name my-clip --results results/runs_mine__shapes-zeroshot.json
"""


def add_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reclip-eval card", description="Render a model card.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--name", help="the model's name on the card (default: the folder's name); a named model "
                                  "(zoo/NAME.yaml) also brings its description and paper rows")
    p.add_argument("--results", nargs="*", default=[], help="results JSON files to include")
    return p


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from reclip_eval.atomic import write_text_atomic
    from reclip_eval.cards.render import load_results, render_card
    from reclip_eval.checkpoint import CARD_NAME, TRAINING_NAME, read_config
    from reclip_eval.names import near_matches
    from reclip_eval.registry import named_yaml_files
    from reclip_eval.zoo.entries import FOLDER, load_entry

    config = read_config(args.checkpoint)
    named = named_yaml_files(FOLDER)
    entry = load_entry(args.name) if args.name in named else None
    if args.name and entry is None:  # any name is a card's title; say so, since a mistyped zoo name looks the same
        near = near_matches(args.name, list(named))
        print(f"note: {args.name!r} is not a named model (zoo/), so the card has no paper rows"
              + (f"; did you mean {', '.join(map(repr, near))}?" if near else ""), file=sys.stderr)
    training_path = args.checkpoint / TRAINING_NAME
    training = json.loads(training_path.read_text()) if training_path.is_file() else None
    text = render_card(model_name=args.name or args.checkpoint.name, config=config, entry=entry,
                       training=training, results=load_results(args.results), results_paths=list(args.results))
    write_text_atomic(args.checkpoint / CARD_NAME, text)
    print(args.checkpoint / CARD_NAME)
    return 0
