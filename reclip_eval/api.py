"""The Python API, re-exported lazily at the package top (`reclip_eval.load`, ...; importing the package imports no
torch):

    import reclip_eval
    model = reclip_eval.load("reclip-demo")               # any --model spec: NAME, DIR, hf-hub:ORG/NAME, openclip:ARCH
    features = model.encode_images(model.transform(image)[None])   # (1, D) float32, L2-normalised
    results = reclip_eval.evaluate(model, "shapes-zeroshot")        # the results dict the CLI writes
    reclip_eval.list_models(), reclip_eval.list_tasks()

The command line runs evaluation through the same pieces (`evaluate_tasks`, `ResultsFiles`), so a number from
either is the same measurement, stored by the same results_store rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reclip_eval.eval.results_store import Stored
    from reclip_eval.eval.runner import EvalOptions
    from reclip_eval.eval.tasks import TaskSpec
    from reclip_eval.zoo.adapter import ModelAdapter


def load(spec: str, *, checkpoint: str | None = None, pretrained: str | None = None, image_size: int | None = None,
         device: str = "auto", precision: str = "auto", random_init: bool = False,
         backend: str = "torch", model_config: str | Path | dict[str, Any] | None = None,
         tokenizer: str | None = None) -> ModelAdapter:
    """The model a `--model` spec names, placed on `device` ("auto": a GPU when visible) at `precision` ("auto":
    bf16 autocast on a GPU, fp32 on the CPU). It has `transform` (PIL image -> tensor), `tokenize`,
    `encode_images`, `encode_texts` (L2-normalised float32 numpy arrays) and `describe()`.

    `checkpoint` gives a named model or `openclip:ARCH` its weights, `pretrained` an `openclip:ARCH` one of
    open_clip's pretrained tags (read from the Hugging Face cache), `image_size` builds the model at another input
    size (the position embedding resampled), `random_init` evaluates `openclip:ARCH` without weights on purpose,
    `model_config` gives `big_vision:PATH.npz` big_vision's model config (a JSON/YAML path or a dict), `tokenizer`
    its tokenizer (`sentencepiece:PATH.model`, `bert:PATH/vocab.txt`: reclip_eval.models.tokenizers)."""
    from reclip_eval.device import resolve_device, resolve_precision
    from reclip_eval.kinds import load_adapter

    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    adapter = load_adapter(spec, checkpoint=checkpoint, pretrained=pretrained, image_size=image_size, device=device,
                           random_init=random_init, backend=backend, model_config=model_config, tokenizer=tokenizer)
    return adapter.place(device, precision)


@dataclass(frozen=True)
class ResultsFiles:
    """Where results JSON go (`--output`) and how an existing file is treated (results_store's rules)."""

    output_dir: Path
    overwrite: bool = False  # replace a file that records another measurement
    per_image_size: bool = False  # a resolution sweep: one file per image size
    tag_weights: bool = False  # a named model with other weights: files of its own, named by the weights' sha256

    def path(self, results: dict[str, Any]) -> Path:
        from reclip_eval.eval.results_store import results_path

        return results_path(results, self.output_dir, per_image_size=self.per_image_size,
                            tag_weights=self.tag_weights)

    def check(self, adapter: ModelAdapter, tasks: list[TaskSpec]) -> None:
        """Refuse before anything is evaluated when a file there records another model setup."""
        from reclip_eval.eval.results_store import check_before_run

        model = adapter.describe()
        for task in tasks:
            planned = {"model": model, "task": {"name": task.name}}
            check_before_run(self.path(planned), model, adapter.precision, overwrite=self.overwrite)

    def store(self, results: dict[str, Any]) -> Stored:
        from reclip_eval.eval.results_store import store_results

        return store_results(results, self.path(results), overwrite=self.overwrite)

    def measured(self, adapter: ModelAdapter, task: TaskSpec, options: EvalOptions
                 ) -> tuple[dict[str, Any], Stored] | None:
        """(the file's results, `Stored(path, "skipped")`) when the file there already records this measurement
        (eval/resume.py), else None."""
        from reclip_eval.eval.results_store import Stored
        from reclip_eval.eval.resume import stored_measurement

        path = self.path({"model": adapter.describe(), "task": {"name": task.name}})
        found = stored_measurement(adapter, task, options, path)
        return None if found is None else (found, Stored(path, "skipped"))


def evaluate_tasks(adapter: ModelAdapter, tasks: list[TaskSpec], options: EvalOptions,
                   files: ResultsFiles | None = None,
                   argv: list[str] | None = None, *,
                   resume: bool = False) -> Iterator[tuple[dict[str, Any], Stored | None]]:
    """Evaluate `adapter` on each task in turn: (results, how its file was stored, None when not stored). Every
    results file is checked before the first task runs; under torchrun only the main process writes. With `resume`
    a task whose file in `files` already records this measurement is not evaluated again: its results are the
    file's, stored "skipped" (under torchrun the other processes get `{}`)."""
    from reclip_eval.distributed import is_main_process
    from reclip_eval.eval.runner import evaluate as run_task

    if files is not None:
        files.check(adapter, tasks)
    for task in tasks:
        done = files.measured(adapter, task, options) if resume and files is not None else None
        if done is not None:
            yield done
            continue
        results = run_task(adapter, task, options, argv)
        stored = files.store(results) if files is not None and is_main_process() else None
        yield results, stored


def evaluate(model: ModelAdapter | str, task: TaskSpec | str, *, data_dir: str | Path | None = None,
             batch_size: int = 128, workers: int = 2, output: str | Path | None = None,
             overwrite: bool = False) -> dict[str, Any]:
    """Evaluate `model` (loaded by `load`, or a spec to load) on `task` (a task name, alias or YAML path) on the
    model's device and precision: the results dict the CLI writes (metrics, counts, model, task, run). A results
    file is written only when `output` names a folder, by the CLI's rules (`overwrite` as --overwrite)."""
    from reclip_eval.eval.runner import EvalOptions
    from reclip_eval.eval.tasks import load_task

    spec = load_task(task) if isinstance(task, str) else task
    adapter = load(model) if isinstance(model, str) else model
    options = EvalOptions(data_dir=data_dir, batch_size=batch_size, workers=workers, device=adapter.device,
                          precision=adapter.precision)
    files = ResultsFiles(Path(output).expanduser(), overwrite=overwrite) if output is not None else None
    # The results record the equivalent command line (there is none: this is a Python call).
    argv = ["--model", adapter.model_id, "--task", spec.name]
    results, _ = next(evaluate_tasks(adapter, [spec], options, files, argv))
    return results


def list_models() -> list[str]:
    """The named models (zoo/); any open_clip architecture (`openclip:ARCH`), checkpoint folder or `hf-hub:` repo
    loads too (`reclip-eval models` lists the model kinds)."""
    from reclip_eval.zoo.entries import list_entries

    return [entry.name for entry in list_entries()]


def list_tasks() -> list[str]:
    """The named tasks (tasks/ and its generated sub-folders); CLIP_benchmark's dataset names are accepted as
    aliases (`task_aliases()`)."""
    from reclip_eval.eval.tasks import task_files

    return list(task_files())
