"""Model cards (a checkpoint's README.md): rendered from the zoo entry, config, training record, results and the
paper's tables; huggingface_hub reads the model-index back."""

import json

from huggingface_hub import ModelCard

from reclip_eval.cards.render import render_card
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task
from reclip_eval.paper_tables import load_paper_tables
from reclip_eval.zoo.entries import load_entry
from reclip_eval.zoo.resolve import load_adapter


def test_card_round_trips_eval_results(tiny_checkpoint, synth_dir):
    adapter = load_adapter(str(tiny_checkpoint))
    results = evaluate(adapter, load_task("shapes-zeroshot"), EvalOptions(data_dir=synth_dir, workers=0))
    entry = load_entry("reclip-64")
    text = render_card(model_name="reclip-64", config=entry.config(), entry=entry, results=[results],
                       results_paths=["leaderboards/results/x.json"])
    parsed = ModelCard(text).data.eval_results
    assert {(r.dataset_name, r.metric_name) for r in parsed} == {
        ("shapes-zeroshot", m) for m in ("top1", "top5", "mean_per_class_recall")}
    top1 = next(r for r in parsed if r.metric_name == "top1")
    assert top1.metric_value == round(100 * results["metrics"]["top1"], 2)
    # Paper numbers are present and labelled as the paper's, apart from the measured ones.
    assert "These are the paper's numbers" in text and "| Table 1 | RECLIP-64 (300k steps) | imagenet/top1 | 73.3 |" in text
    assert "results file `leaderboards/results/x.json`" in text


def test_card_shows_the_referenced_rows_of_the_paper_tables():
    """Every number of each row the entry references, as the tables file holds it, under its table and row, with
    the paper named; the entry itself holds no numbers."""
    entry = load_entry("reclip-64")
    text = render_card(model_name="reclip-64", config=entry.config(), entry=entry)
    paper = load_paper_tables()
    tables = {t.table: t for t in paper.tables}
    assert paper.source in text and "openreview.net" in text
    for ref in entry.paper_rows:
        (row,) = [r for r in tables[ref.table].rows if r.row == ref.row]
        for key, value in row.values.items():
            assert f"| {ref.table} | {ref.row} | {key} | {value} |" in text
    # Table 5's before-finetune numbers keep the table's own keys (one source: no relabelled copy).
    assert "| Table 5 | RECLIP-64 (300k) | before_finetune/imagenet/top1 | 62.8 |" in text


def test_card_without_a_named_model_still_names_the_paper():
    text = render_card(model_name="org/x", config=load_entry("reclip-demo").config())
    assert "reports no numbers for this model" in text and "openreview.net" in text


def test_bundled_demo_card_states_its_measured_accuracy():
    adapter = load_adapter("reclip-demo")
    card = ModelCard.load(adapter.source.path / "README.md")
    # Every number of the card's model-index is the committed results file's, rounded as the card writes it.
    from reclip_eval.paths import data_folder

    results = data_folder("leaderboards") / "results"
    for entry in card.data.eval_results:
        measured = json.loads((results / f"reclip-demo__{entry.dataset_name}.json").read_text())
        assert entry.metric_value == round(100 * measured["metrics"][entry.metric_name], 2), entry
    assert {r.dataset_name for r in card.data.eval_results} >= {"shapes-zeroshot", "shapes-retrieval"}
    assert "reclip-eval --model reclip-demo --task shapes-zeroshot" in card.text


def test_detection_metrics_are_average_precision_and_undefined_ones_are_left_out():
    from reclip_eval.cards.render import _eval_results

    detection = {"task": {"kind": "detection", "name": "shapes-lvis", "split": "val"},
                 "metrics": {"AP": 0.2302, "APl": -1.0, "box_APr": 0.17}}
    entries = {e.metric_name: e for e in _eval_results([detection], "m")}
    assert set(entries) == {"AP", "box_APr"}  # APl -1: no large objects, so no score (not -100)
    assert {e.metric_type for e in entries.values()} == {"mean_average_precision"}
    assert entries["AP"].metric_value == 23.02
