"""The Hub's `.eval_results/*.yaml` files (https://huggingface.co/docs/hub/eval-results), one per results JSON a
checkpoint publishes, written beside the card's `model-index` by reclip_eval.publish.

    eval_result_files({"results/m__imagenet-v2.json": parsed}, repo_url="https://huggingface.co/org/m", revision="main")
    # -> EvalResultFiles(files={".eval_results/m__imagenet-v2.yaml": b"- dataset: ..."}, left_out={})

The format is huggingface_hub's (EvalResultEntry, eval_result_entries_to_yaml): a YAML list of entries, each
`dataset: {id, task_id}`, `value`, `date`, `source: {url, name}`, `notes`. Here one entry per metric of the file:

- dataset.id: the Hub dataset that was evaluated. Data read as `--data-dir hf-datasets:ID` names itself (the results
  record it); a paper task read from local files names the CLIP_benchmark set of the same test images, which the task
  also reads (its clip_benchmark_wds* layout). Any other result (a synthetic task, a local set of no known Hub id)
  gets no file, and the reason is returned: a leaderboard entry on a dataset we did not evaluate is worse than none.
- dataset.task_id: the metric's key in the results (`top1`, `image_retrieval_recall@5`, ...): the format has no
  metric field, and one value per (dataset, task_id) is what a leaderboard ranks.
- value: the results JSON's number as it is (a fraction, not the card's rounded percentage).
- date: when the evaluation finished (run.finished_at), so pushing the same results again writes the same bytes.
- source: the results JSON in the same repo and revision; notes: the task, image size, precision and the command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from reclip_eval.eval.results_schema import InvalidResultsError, is_undefined, validate_results

FOLDER = ".eval_results"  # huggingface_hub.constants.EVAL_RESULTS_FOLDER
HF_DATASETS = "hf-datasets:"  # how the results record data read from the Hugging Face cache
# The paper's tasks and the CLIP_benchmark webdataset of the same test images (their clip_benchmark_wds* layout).
CLIP_BENCHMARK_SETS = {
    "imagenet": "clip-benchmark/wds_imagenet1k",
    "imagenet-v2": "clip-benchmark/wds_imagenetv2",
    "imagenet-a": "clip-benchmark/wds_imagenet-a",
    "imagenet-r": "clip-benchmark/wds_imagenet-r",
    "imagenet-sketch": "clip-benchmark/wds_imagenet_sketch",
    "flickr30k": "clip-benchmark/wds_flickr30k",
    "mscoco": "clip-benchmark/wds_mscoco_captions",
}


@dataclass
class EvalResultFiles:
    files: dict[str, bytes] = field(default_factory=dict)  # path in the repo -> YAML bytes
    left_out: dict[str, str] = field(default_factory=dict)  # results path -> why it has no file


def eval_results_path(results_path: str) -> str:
    """`results/NAME.json` -> `.eval_results/NAME.yaml`: the file a published results JSON gets."""
    return f"{FOLDER}/{PurePosixPath(results_path).stem}.yaml"


def hub_dataset_id(results: dict[str, Any]) -> str | None:
    """The Hub dataset a (schema-valid) results file measured, or None when it names none."""
    task = results["task"]
    fingerprint = task.get("data_fingerprint")
    if isinstance(fingerprint, str) and fingerprint.startswith(HF_DATASETS):
        return fingerprint[len(HF_DATASETS):]
    return CLIP_BENCHMARK_SETS.get(task["name"])


def eval_result_files(results: dict[str, Any], *, repo_url: str, revision: str) -> EvalResultFiles:
    """{results path in the repo: parsed JSON} -> the `.eval_results/` files for them and the ones left out."""
    import yaml
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    out = EvalResultFiles()
    for path, data in sorted(results.items()):
        try:
            validate_results(data, path)
        except InvalidResultsError as e:
            out.left_out[path] = str(e).removeprefix(f"{path}: ")
            continue
        dataset_id = hub_dataset_id(data)
        if dataset_id is None:
            out.left_out[path] = (f"task {data['task']['name']!r} was not read from a Hub dataset "
                                  f"(--data-dir {HF_DATASETS}ORG/NAME) and has no known CLIP_benchmark set")
            continue
        task, model, run = data["task"], data["model"], data["run"]
        notes = (f"reclip-eval task {task['name']} ({task['kind']}, split {task.get('split') or 'n/a'}), image size "
                 f"{model['image_size']}, {data['precision']}: {run['command']}")
        entries = [EvalResultEntry(dataset_id=dataset_id, task_id=metric, value=value, date=run.get("finished_at"),
                                   source_url=f"{repo_url}/blob/{revision}/{path}", source_name="reclip-eval results",
                                   notes=notes)
                   for metric, value in data["metrics"].items() if not is_undefined(value)]
        # safe_dump: plain YAML types only, whatever a results file holds; keys in the format's order.
        text = yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False, allow_unicode=True)
        out.files[eval_results_path(path)] = text.encode("utf-8")
    return out
