"""reclip-eval --model M --task T: zero-shot evaluation, a metrics table, one results JSON per task."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  reclip-eval --model reclip-demo --task shapes-zeroshot                   # results JSON in ./results/
  reclip-eval --model reclip-demo --task shapes-zeroshot,shapes-retrieval --output leaderboards/results
  reclip-eval --model reclip-64-f20k --checkpoint runs/reclip-64-f20k --task imagenet --data-dir /data
  reclip-eval --model hf-hub:org/name@main --task shapes-zeroshot
  reclip-eval --model path/to/checkpoint_dir --task my_task.yaml
  reclip-eval --model runs/reclip-64 --task imagenet --image-size 64,112,224     # resolution sweep
  reclip-eval --model reclip-demo,runs/reclip-64 --task datacomp --data-dir /data/wds   # a suite, two models
"""

# Flags that give one model its weights: with several --model they would apply to all of them, so they are refused.
PER_MODEL_FLAGS = ("checkpoint", "pretrained", "random_init", "model_config", "tokenizer")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected image sizes like 64,112,224, got {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive image sizes, got {text!r}")
    return sizes


def _count(minimum: int):
    """An argparse type: an integer >= `minimum` (0 DataLoader workers is valid, 0 images per batch is not)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


class _Once(argparse.Action):
    """Refuse a repeated option (argparse would silently keep the last): several values go comma separated."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest) is not None:
            parser.error(f"{option_string} given twice: list several comma separated ({option_string} A,B)")
        setattr(namespace, self.dest, values)


def add_parser() -> argparse.ArgumentParser:
    from reclip_eval.compute_results import DEFAULT_RESULTS_DIR
    from reclip_eval.eval.task_kinds import TASK_KINDS
    from reclip_eval.zoo.backends import BACKENDS, DEFAULT_BACKEND

    p = argparse.ArgumentParser(prog="reclip-eval", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description=f"Evaluate a model on tasks of any kind ({', '.join(TASK_KINDS.names())});\n"
                                            "`reclip-eval tasks` lists the tasks, kinds and data layouts.")
    p.add_argument("--model", required=True, action=_Once,
                   help="named model, a checkpoint dir, hf-hub:org/name[@rev], openclip:ARCH (with --pretrained TAG or "
                        "--checkpoint FILE), hf:PATH or big_vision:PATH.npz (`reclip-eval models` lists them); "
                        "several comma separated, loaded one at a time")
    p.add_argument("--task", required=True, action=_Once,
                   help="task name(s) or suite name(s) (tasks/suites/: datacomp, ...), comma separated, or a task "
                        "or suite YAML path; several tasks or models resume: what the --output folder already "
                        "holds for the same measurement is not evaluated again")
    p.add_argument("--recompute", action="store_true",
                   help="evaluate every task again even where --output holds the same measurement (the results "
                        "store's rules then keep, refuse or, with --overwrite, replace the file)")
    p.add_argument("--checkpoint", help="weights for a named model: a checkpoint dir or hf-hub:org/name[@rev]")
    p.add_argument("--pretrained", metavar="TAG",
                   help="for openclip:ARCH: one of open_clip's pretrained tags (e.g. laion2b_s34b_b79k), its Hub "
                        "weights read from the Hugging Face cache (safetensors only)")
    p.add_argument("--random-init", action="store_true",
                   help="evaluate openclip:ARCH with random weights on purpose (a baseline; its id and results say so)")
    p.add_argument("--model-config", metavar="FILE",
                   help="for big_vision:PATH.npz: big_vision's model config (config.model, JSON or YAML, its own key "
                        "names) for what the weights cannot tell, e.g. the image and text pool_type")
    p.add_argument("--tokenizer", metavar="SPEC",
                   help="for big_vision:PATH.npz: the tokenizer it was trained with, tokenising as big_vision / CLIPA "
                        "do: sentencepiece:PATH.model[,eos=sticky,pad_value=1,lower=true] (SigLIP, LiT), "
                        "bert:PATH/vocab.txt (CLIPA), or a big_vision pp string 'tokenize(...)' (default: CLIP's "
                        "BPE, for a 49,408-row text embedding)")
    p.add_argument("--data-dir", help="data root (default: $RECLIP_DATA, else the cache dir), a task's folder, or "
                                      "hf-datasets:ID for a Hugging Face Hub dataset")
    p.add_argument("--output", type=Path, default=DEFAULT_RESULTS_DIR,
                   help=f"where results JSON go (default: ./{DEFAULT_RESULTS_DIR}; the committed leaderboards' "
                        "results are written with --output leaderboards/results)")
    p.add_argument("--image-size", type=_sizes, default=[],
                   help="evaluate at these image sizes, comma separated (pos-emb resampled at load): a resolution "
                        "sweep, one results file per size")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a results file that records another measurement (other weights, data, "
                        "preprocessing, prompts or precision) or other metrics; without it such a file is kept and "
                        "the run refused")
    p.add_argument("--batch-size", type=_count(1), default=128)
    p.add_argument("--workers", type=_count(0), default=2, help="DataLoader worker processes (0: in-process)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 autocast on GPU, fp32 on CPU; bf16 on a CPU (one with native bf16) is an "
                        "approximate speedup, recorded in the results")
    p.add_argument("--decode", choices=["full", "draft"], default="full",
                   help="draft: decode JPEGs at a reduced scale (1/2, 1/4 or 1/8, keeping both sides >= 1.25 x the image "
                        "size), an approximate speedup recorded in the results (docs/compute.md); full: exact")
    p.add_argument("--backend", choices=BACKENDS.names(), default=DEFAULT_BACKEND,
                   help="the framework computing the embeddings: torch, or jax (our own checkpoints, converted to the "
                        "flax model; needs the jax extra); results files of another backend get a __BACKEND suffix")
    return p


def _models(args: argparse.Namespace) -> list[str]:
    """The --model specs; the flags that give one model its weights are refused with several."""
    from reclip_eval.errors import ConfigError

    models = list(dict.fromkeys(m.strip() for m in args.model.split(",") if m.strip()))
    given = [f"--{flag.replace('_', '-')}" for flag in PER_MODEL_FLAGS if getattr(args, flag)]
    if not models:
        raise ConfigError("--model", [f"expected model specs, comma separated, got {args.model!r}"])
    if len(models) > 1 and given:
        raise ConfigError("command line", [f"{', '.join(given)} would apply to each of the {len(models)} models of "
                                           "--model; evaluate a model that needs them in a command of its own"])
    if len(models) > 1:
        _check_names(models)
    return models


def _check_names(models: list[str]) -> None:
    """A later model that is no named model and no folder is refused before the first is evaluated (loading each
    in turn would find the typo only after the models before it ran)."""
    import reclip_eval.kinds  # noqa: F401  (registers every kind: each prefix form, openclip: hf: big_vision:, known)
    from reclip_eval.errors import CheckpointError
    from reclip_eval.hub import HUB_PREFIX
    from reclip_eval.zoo.entries import load_entry
    from reclip_eval.zoo.model_kinds import prefix_form_of

    for spec in models:
        if spec.startswith(HUB_PREFIX) or prefix_form_of(spec) is not None or Path(spec).expanduser().exists():
            continue
        if "/" in spec or spec.startswith((".", "~")):
            raise CheckpointError(f"{spec}: no such folder (--model)")
        load_entry(spec)  # an unknown name: its near matches


def run(args: argparse.Namespace) -> int:
    import gc

    import torch
    from tabulate import tabulate

    from reclip_eval.api import ResultsFiles, evaluate_tasks, load
    from reclip_eval.data.layouts import HF_DATASETS_PREFIX
    from reclip_eval.device import resolve_device, resolve_precision
    from reclip_eval.distributed import init_from_env, is_main_process
    from reclip_eval.errors import ConfigError
    from reclip_eval.eval.features import image_sweep
    from reclip_eval.eval.results_store import describe_stored
    from reclip_eval.eval.runner import EvalOptions
    from reclip_eval.eval.suites import plan_tasks

    plan = plan_tasks(args.task)  # every task and suite validated before a model is loaded
    tasks, models = plan.tasks, _models(args)
    if plan.suites and str(args.data_dir).startswith(HF_DATASETS_PREFIX):
        # One Hub id would be read as every task's set (a from_data task takes the set's own class names).
        raise ConfigError("--data-dir", [f"{args.data_dir} names one dataset, and the suite {plan.suites[0].name} "
                                         "reads one set per task: give the data root holding a folder per task"])
    device = init_from_env(resolve_device(args.device))  # under torchrun: join the group, one device per process
    for line in plan.not_run() if is_main_process() else []:
        print(line, file=sys.stderr)
    precision = resolve_precision(args.precision, device)
    options = EvalOptions(data_dir=args.data_dir, batch_size=args.batch_size, workers=args.workers, device=device,
                          precision=precision, decode=args.decode)
    # Several (model, task) pairs, or a suite: a matrix, which resumes (a killed one picks up where it stopped) and
    # ends with one table. One pair is measured again, so a rerun checks that its number reproduces.
    matrix = len(models) > 1 or len(tasks) > 1 or bool(plan.suites)
    resume = matrix and not args.recompute
    rows, measured = [], {}  # measured: column label -> task name -> results
    for spec in models:
        # Every size's model first: one pass over a task's images feeds them all (each image decoded once).
        adapters = [load(spec, checkpoint=args.checkpoint, pretrained=args.pretrained, image_size=size,
                         device=device, precision=precision, random_init=args.random_init, backend=args.backend,
                         model_config=args.model_config, tokenizer=args.tokenizer)
                    for size in args.image_size or [None]]
        with image_sweep(adapters):
            for adapter in adapters:
                # A named model evaluated with other weights gets files of its own (named by the weights' sha256).
                files = ResultsFiles(args.output, overwrite=args.overwrite, per_image_size=bool(args.image_size),
                                     tag_weights=args.checkpoint is not None)
                label = adapter.model_id + (f" @ {adapter.image_size} px" if args.image_size else "")
                column = measured.setdefault(label, {})
                for task, (results, stored) in zip(tasks, evaluate_tasks(adapter, tasks, options, files,
                                                                         resume=resume), strict=True):
                    if not is_main_process():
                        continue
                    column[task.name] = results
                    for metric, value in results["metrics"].items():
                        # LVIS's -1: no ground truth in that slice (e.g. no large objects), so the AP is undefined.
                        shown = f"{100 * value:.2f}" if value >= 0 else "n/a (no ground truth)"
                        rows.append([task.name, adapter.image_size, metric, shown])
                    if stored is not None and stored.action == "skipped":
                        print(f"{task.name}: {describe_stored(stored)}", file=sys.stderr)
                        continue
                    counts = results["counts"]
                    skipped = counts.get("images_skipped", 0)
                    note = f", {skipped} skipped (listed in the JSON)" if skipped else ""
                    print(f"{task.name}: {counts.get('images_evaluated')} images evaluated{note}; "
                          f"{describe_stored(stored)}", file=sys.stderr)
        model_id = adapters[-1].model_id
        # One model at a time: the next one is loaded only once this one's memory is given back.
        del adapters, adapter
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if not is_main_process():
        return 0
    from reclip_eval.zoo.backends import DEFAULT_BACKEND

    # Where the embeddings were computed: another backend than torch runs on its own device (placed by its name).
    where = device if args.backend == DEFAULT_BACKEND else f"{args.backend} backend on {device}"
    if matrix and (len(models) > 1 or plan.suites):
        from reclip_eval.leaderboard.suite import summary_table

        print(f"models: {', '.join(measured)} ({precision}, {where}); main metric of each task (%):")
        print(tabulate(*summary_table(tasks, plan.suites, measured), tablefmt="github", disable_numparse=True))
        return 0
    print(f"model: {model_id} ({precision}, {where})")
    print(tabulate(rows, headers=["task", "image px", "metric", "%"], tablefmt="github"))
    return 0
