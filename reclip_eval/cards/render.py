"""Render a checkpoint's README.md: a Hub model card whose `model-index` metadata huggingface_hub reads back.

Measured numbers come only from results JSON files and carry the file and the command that produced them;
numbers the paper reports are in a separate section, labelled with the paper and its table and row, read from the
paper's tables (leaderboards/paper/reclip_tables.yaml) through the rows the named model's zoo entry references.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclip_eval.eval.results_markdown import markdown_code, markdown_text
from reclip_eval.eval.results_schema import is_undefined, read_results, validate_results
from reclip_eval.eval.task_kinds import hf_task_type
from reclip_eval.models.config import CLIPConfig
from reclip_eval.zoo.entries import ZooEntry


def _metric_type(task_kind: str, metric: str) -> str:
    if task_kind == "detection":
        return "mean_average_precision"  # LVIS AP (mask, or box_ prefixed)
    return "recall" if "R@" in metric else "accuracy"


def _eval_results(results: list[dict[str, Any]], model_name: str):
    from huggingface_hub import EvalResult

    out = []
    for r in results:
        task = r["task"]
        for metric, value in r["metrics"].items():
            if is_undefined(value):  # LVIS's -1: no ground truth in that slice, so no score
                continue
            out.append(EvalResult(
                task_type=hf_task_type(task["kind"]),
                dataset_type=task["name"], dataset_name=task["name"], dataset_split=task.get("split"),
                metric_type=_metric_type(task["kind"], metric), metric_name=metric,
                metric_value=round(100 * value, 2),
            ))
    return out


def _architecture(config: CLIPConfig) -> str:
    v, t = config.vision, config.text
    r = config.pos_embed_resample
    return "\n".join([
        "| tower | details |", "|---|---|",
        f"| image | ViT, patch {v.patch_size}, width {v.width}, {v.layers} layers, {v.heads} heads, "
        f"{v.image_size} px ({v.grid_size}x{v.grid_size} tokens), {v.pool.upper()} pooling |",
        f"| text | transformer, width {t.width}, {t.layers} layers, {t.heads} heads, context {t.context_length}, "
        f"{t.tokenizer} tokenizer, {t.pool} pooling |",
        f"| shared | embedding dim {config.embed_dim}, learnable temperature |",
        f"| pos-emb resampling | {r.mode}, align_corners={r.align_corners}, antialias={r.antialias} |",
        f"| preprocessing | resize shorter side ({config.preprocess.interpolation}), centre crop, "
        f"mean {list(config.preprocess.mean)}, std {list(config.preprocess.std)} |",
    ])


def _training(training: dict[str, Any] | None) -> str:
    if not training:
        return "No training record in this checkpoint."
    lines = ["| stage | image size | text length | batch | steps | samples seen | GMACs / sample | "
             "loss first -> last | wall time |", "|---|---|---|---|---|---|---|---|---|"]
    for s in training["stages"]:
        gmacs = s.get("gmacs_per_sample", "n/a")
        cell = {k: markdown_text(str(v)) for k, v in {**s, "gmacs_per_sample": gmacs}.items()}  # the record's text
        lines.append(f"| {cell['name']} | {cell['image_size']} | {cell['text_length']} | {cell['batch_size']} | "
                     f"{cell['steps']} | {cell['samples_seen']} | {cell['gmacs_per_sample']} | {cell['loss_first']} -> "
                     f"{cell['loss_last']} | {cell['wall_time_s']} s |")
    lines.append("")
    lines.append(f"Recipe {markdown_code(training['recipe'])}; {markdown_text(training['samples_seen'])} samples "
                 f"seen; {markdown_text(training['wall_time_s'])} s on {markdown_text(training['device'])}.")
    init = training.get("init")
    if isinstance(init, dict):  # the checkpoint the first stage started from (a recipe's `init:`)
        lines.append(f"Started from {markdown_code(str(init.get('model')))} (weights sha256 "
                     f"{markdown_code(str(init.get('sha256')))}), not from random weights.")
    return "\n".join(lines)


def _measured(results: list[dict[str, Any]], results_paths: list[str]) -> str:
    if not results:
        return "No measured results yet."
    blocks = []
    for r, path in zip(results, results_paths, strict=True):
        rows = ["| metric | value (%) |", "|---|---|"]
        rows += [f"| {markdown_text(k)} | {'n/a (no ground truth)' if is_undefined(v) else f'{100 * v:.2f}'} |"
                 for k, v in r["metrics"].items()]
        # Everything below is read from the results file: text, never markup (results_markdown.py).
        images = markdown_text(str(r["counts"].get("images_evaluated")))
        blocks.append(
            f"**{markdown_text(r['task']['name'])}** ({images} images, {markdown_text(r['precision'])}, "
            f"{markdown_text(str(r['model']['image_size']))} px, on {markdown_text(r['run']['device'])})\n\n" + "\n".join(rows) +
            f"\n\nMeasured with {markdown_code(r['run']['command'])}; results file {markdown_code(path)}."
        )
    return "\n\n".join(blocks)


# Where to read the paper whose tables leaderboards/paper/reclip_tables.yaml transcribes.
PAPER_URL = "https://openreview.net/forum?id=Ufc5cWhHko"


def _paper(entry: ZooEntry | None) -> str:
    numbers = entry.paper_numbers() if entry is not None else []
    if not numbers:
        return f"The paper (RECLIP, {PAPER_URL}) reports no numbers for this model."
    blocks = []
    for source in dict.fromkeys(p.source for p in numbers):  # one block per paper, in the entry's order
        rows = [p for p in numbers if p.source == source]
        url = rows[0].url or PAPER_URL
        lines = [f"These are the paper's numbers ({source}, {url}), not measured by this project; each row is the "
                 "paper's table and row:", "", "| table | row | metric | paper value |", "|---|---|---|---|"]
        for p in rows:
            lines += [f"| {p.table} | {p.row} | {k} | {v} |" for k, v in p.values.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_card(
    *,
    model_name: str,
    config: CLIPConfig,
    entry: ZooEntry | None = None,
    training: dict[str, Any] | None = None,
    results: list[dict[str, Any]] | None = None,
    results_paths: list[str] | None = None,
) -> str:
    from huggingface_hub import ModelCardData

    results = results or []
    results_paths = results_paths or ["?"] * len(results)
    for result, path in zip(results, results_paths, strict=True):  # never a card from a malformed file
        validate_results(result, path)
    data = ModelCardData(
        model_name=model_name, library_name="reclip-eval", license=entry.license if entry else "apache-2.0",
        pipeline_tag="zero-shot-image-classification", tags=["clip", "reclip", "zero-shot-image-classification"],
        eval_results=_eval_results(results, model_name) or None,
    )
    description = entry.description if entry else "A RECLIP-style CLIP checkpoint trained with reclip-eval."
    sections = [
        f"---\n{data.to_yaml()}\n---", f"# {markdown_text(model_name)}", description,
        "## Architecture", _architecture(config),
        "## Training", _training(training),
        "## Training data", (entry.training_data if entry and entry.training_data else "See the recipe."),
        "## Intended use and limitations",
        "\n\n".join(x for x in [entry.intended_use if entry else "", entry.limitations if entry else ""] if x)
        or "Research use.",
        "## Evaluation (measured by this project)", _measured(results, results_paths),
        "## Paper-reported numbers", _paper(entry),
        "## Usage",
        "```python\nfrom reclip_eval.checkpoint import load_checkpoint\nmodel = load_checkpoint(\"PATH_OR_REPO\")\n```\n\n"
        f"or `reclip-eval --model {entry.name if entry else 'PATH_OR_REPO'} --task shapes-zeroshot`.",
    ]
    return "\n\n".join(sections) + "\n"


def load_results(paths: list[str | Path]) -> list[dict[str, Any]]:
    """The results files at `paths`, each checked against the results schema (InvalidResultsError naming it)."""
    return [read_results(p) for p in paths]
