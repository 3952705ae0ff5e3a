"""`reclip-eval train --backend jax RECIPE`: the same recipes (training/*.yaml) trained by the flax model's jit step.

What is shared with the torch trainer (train/loop.py), so that the two backends run the same experiment:
- the run folder rules, the training shards and the data stream (same seeds: the same batches in the same order);
- the initial weights: the torch model built from the recipe's seed, converted (flax_models/convert.py, exact);
- the stages: each starts by `shape_for_stage` on the torch model (the paper's position-embedding upsampling,
  the same resampling and log line), then converts the weights to flax; the finetune's image size, text length and
  image and text token reduction are the recipe's (text reduction happens in the shared data stream);
- the optimizer groups of the stage's param rules and the lr schedule (jax_train/optim.py `recipe_adamw`);
- the outputs: stage checkpoints, the final checkpoint in the HF layout (the torch backend and the evaluation load
  it), training.json (with `backend: jax`), resume points in the torch trainer's layout.

Resume points (our own format, not orbax: one layout for both backends, no pickles): model.safetensors holds the
weights under their torch names; optimizer.safetensors the optax state's arrays keyed by their tree paths
(`jax.tree_util.keystr`); state.json the step, reports and settings, with `backend: jax`, so a torch --resume of
a jax run (or the reverse) is refused. Masks are a function of the step (jax_train/step.py), the data stream is
positioned as the torch trainer's: a resumed run continues its loss curve.

One process over all of jax's local devices (a data-parallel mesh; `data_parallel: fsdp` shards the parameters as
big_vision does). Refused, each with its reason, before the run folder is touched: optimizers other than AdamW
(the torch trainer's Adafactor is torch.optim.Adafactor, the paper's is big_vision's: not one recipe), micro-batches,
activation checkpointing, torchrun. Precision as the torch trainer's: bf16 compute (float32 parameters) for
`precision: bf16`, or `auto` on a GPU.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reclip_eval.checkpoint import save_checkpoint
from reclip_eval.config import to_dict
from reclip_eval.distributed import rank_and_size
from reclip_eval.models.clip import CLIP
from reclip_eval.train.init_from import InitWeights, init_settings, prepare_init, run_record
from reclip_eval.train.loop import (
    SAVE_DTYPES,
    RunContext,
    non_finite_loss,
    open_run,
    replay_resume_point,
    save_stage,
    stage_batches,
    stage_report,
)
from reclip_eval.train.metrics_log import MetricsLog
from reclip_eval.train.optim import optimizer_groups
from reclip_eval.train.out_dir import finish_run
from reclip_eval.train.recipe import RecipeConfig, recipe_to_yaml
from reclip_eval.train.report import StageReport, training_record
from reclip_eval.train.resume import ResumePoint, restore_rng, resume_settings, save_resume_point
from reclip_eval.train.schedule import lr_factor
from reclip_eval.train.stage_setup import (
    TrainingError,
    build_model,
    check_batches,
    check_param_rules,
    rules_source,
    shape_for_stage,
    stage_taggers,
)

log = logging.getLogger(__name__)
BACKEND = "jax"
OPTAX_STATE = "optax"  # the one entry of optimizer.safetensors' skeleton


def unsupported(recipe: RecipeConfig) -> list[str]:
    """What in `recipe` the jax trainer does not do, each with what to change."""
    problems = [f"stages.{s.name}.optimizer.name: {s.optimizer.name} is not on the jax trainer (adamw only: the torch "
                "trainer's adafactor is torch.optim.Adafactor, big_vision's differs, e.g. in its weight decay)"
                for s in recipe.stages if s.optimizer.name != "adamw"]
    problems += [f"stages.{s.name}.micro_batch_size: micro-batches are not on the jax trainer; remove it"
                 for s in recipe.stages if s.micro_batch_size]
    if recipe.slip is not None:
        problems.append("slip: SLIP's self-supervised branch is not on the jax trainer; train it with --backend torch")
    if recipe.activation_checkpointing:
        problems.append("activation_checkpointing: not on the jax trainer; set it to false")
    if rank_and_size()[1] > 1:
        problems.append("torchrun: the jax trainer is one process over all local devices; run it without torchrun")
    return problems


def compute_dtype(recipe: RecipeConfig, platform: str) -> Any:
    """The flax modules' computation dtype: bfloat16 where the torch trainer autocasts to bf16 (precision bf16, or
    auto on a GPU), else None (float32). Parameters, the optimizer and the loss stay float32 either way, and the
    attention softmax and LayerNorm statistics are computed in float32, as under torch's autocast."""
    import jax.numpy as jnp

    bf16 = recipe.precision == "bf16" or (recipe.precision == "auto" and platform != "cpu")
    return jnp.bfloat16 if bf16 else None


def jax_devices(device: str) -> list:
    """`--device` for jax: auto (jax's default platform), cpu, or cuda / gpu."""
    from reclip_eval.flax_models.compile_cache import import_jax

    jax = import_jax()  # the extra's one-line error when jax is missing; the compilation cache on
    platforms = {"auto": None, "cpu": "cpu", "cuda": "gpu", "gpu": "gpu"}
    if device not in platforms:
        raise TrainingError(f"--device {device}: the jax trainer takes auto, cpu or cuda (all devices of the "
                            "platform are used)")
    return jax.devices(platforms[device])


def device_label(devices: list) -> str:
    return "cpu" if devices[0].platform == "cpu" else devices[0].device_kind


def train_jax(recipe: RecipeConfig, out_dir: str | Path, *, data_dir: Path | None = None, device: str = "auto",
              workers: int | None = None, save_stages: bool = True, resume: bool = False,
              wandb_project: str | None = None, init: InitWeights | None = None) -> tuple[CLIP, list[StageReport]]:
    """The torch trainer's `train` (train/loop.py) with the jax step: same arguments, same folder, same outputs."""
    from reclip_eval.jax_train.step import data_mesh

    devices = jax_devices(device)
    problems = unsupported(recipe)
    problems += [f"stages.{s.name}.batch_size: {s.batch_size} must be divisible by the {len(devices)} jax devices"
                 for s in recipe.stages if s.batch_size % len(devices)]
    if problems:
        raise TrainingError(f"recipe {recipe.name}: " + "; ".join(problems))
    check_batches(recipe.stages)
    taggers = stage_taggers(recipe)  # before the run folder and the data, as the torch trainer
    init = prepare_init(recipe, init)
    workers = recipe.data.workers if workers is None else workers
    out_dir = Path(out_dir)
    shards = open_run(recipe, out_dir, data_dir, workers, resume)
    settings = {**resume_settings(workers, 1, shards), "backend": BACKEND, "jax_devices": len(devices)}
    run = RunContext(recipe, shards, device_label(devices), workers, out_dir, init_settings(settings, init),
                     backend=BACKEND, devices=len(devices), taggers=taggers, init=run_record(init))
    model = build_model(recipe, init)
    check_param_rules(model, recipe)
    reports, point = replay_resume_point(model, run, save_stages) if resume else ([], None)
    resumed_at = sum(s.steps for s in recipe.stages[:point.stage_index]) + point.step if point is not None else 0
    run.metrics = MetricsLog(out_dir, recipe.tensorboard, purge_step=resumed_at,
                             wandb_project=wandb_project, config=to_dict(recipe))
    mesh = data_mesh(devices)
    for index in range(len(reports), len(recipe.stages)):
        start = point if point is not None and point.stage_index == index else None
        dtype = compute_dtype(recipe, devices[0].platform)
        reports.append(_run_stage(model, index, run, reports, start, mesh, dtype))
        if save_stages and index < len(recipe.stages) - 1:
            save_stage(model, index, run, reports)
    run.metrics.close()
    save_checkpoint(model, out_dir, recipe_yaml=recipe_to_yaml(recipe),
                    training=training_record(recipe.name, reports, run.device, run.devices, backend=BACKEND,
                                             init=run.init),
                    dtype=SAVE_DTYPES[recipe.save_dtype], in_place=True)
    finish_run(out_dir, recipe.name)
    return model, reports


def param_settings(model: CLIP, index: int, recipe: RecipeConfig) -> tuple[dict[str, tuple[float, float]],
                                                                           dict[str, int]]:
    """(flax path -> (lr, weight decay) of the torch trainer's group for that weight, the rule counts)."""
    from reclip_eval.flax_models.convert import pieces_for

    stage = recipe.stages[index]
    groups = optimizer_groups(model, stage.optimizer, rules_source(recipe, stage))
    by_id = {id(p): (g["lr"], g["weight_decay"]) for g in groups.groups for p in g["params"]}
    by_name = {name: by_id[id(p)] for name, p in model.named_parameters() if id(p) in by_id}
    settings = {}
    for piece in pieces_for(model.config):  # a piece is one torch tensor here, split into one or more flax leaves
        (key,) = piece.torch_keys
        settings.update(dict.fromkeys(piece.flax_paths, by_name[key]))
    return settings, groups.counts()


def _run_stage(model: CLIP, index: int, run: RunContext, done: list[StageReport], resume: ResumePoint | None,
               mesh: Any, dtype: Any) -> StageReport:
    import jax

    from reclip_eval.flax_models.clip import CLIP as FlaxCLIP
    from reclip_eval.flax_models.convert import torch_to_flax
    from reclip_eval.jax_train.optim import recipe_adamw
    from reclip_eval.jax_train.step import init_state, make_train_step, param_shardings

    recipe, stage = run.recipe, run.recipe.stages[index]
    text_resize = shape_for_stage(model, recipe, stage)  # resamples position tables (logged) only on a change
    settings, rule_counts = param_settings(model, index, recipe)
    factors = [lr_factor(stage.lr_schedule())(t) for t in range(stage.steps)]
    tx = recipe_adamw(settings, factors, betas=stage.optimizer.betas, eps=stage.optimizer.eps,
                      grad_clip_norm=stage.optimizer.grad_clip_norm)
    params = torch_to_flax({k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}, model.config)
    state = init_state(params, tx, mesh, param_shardings(params, mesh, fsdp=recipe.data_parallel == "fsdp"))
    first_step = 0
    if resume is not None:
        state, first_step = restore_state(state, resume), resume.step
    report = stage_report(model, stage, resume, run, text_resize)
    report.param_rules = rule_counts
    batches = stage_batches(run, model, index, report, first_step)
    step_fn = make_train_step(FlaxCLIP(model.config, dtype=dtype), tx, mesh, image_tokens=stage.image_tokens,
                              seed=recipe.seed + index)
    started = time.perf_counter() - report.wall_time_s
    from tqdm import tqdm

    progress = tqdm(range(first_step, stage.steps), desc=f"stage {stage.name} ({stage.image_size}px, jax)",
                    unit="step", initial=first_step, total=stage.steps)
    for step in progress:
        pixels, tokens = next(batches)  # the torch stream: (B, 3, H, W) float, (B, L) int64
        state, out = step_fn(state, pixels.permute(0, 2, 3, 1).numpy(), tokens.numpy().astype(np.int32))
        loss = float(out["loss"])
        if not np.isfinite(loss):
            raise non_finite_loss(stage, step, loss, run.out_dir)
        report.losses.append(loss)
        report.samples_seen += stage.batch_size
        report.data_skipped = batches.counts()
        if step % recipe.log_every == 0 or step == stage.steps - 1:
            lr, scale = stage.optimizer.lr * factors[step], float(out["temperature_scale"])
            progress.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", temp=f"{scale:.1f}")
            run.metrics.scalars(sum(r.steps for r in done) + step, {
                "train/loss": loss, "train/lr": lr, "train/temperature_scale": scale,
                "train/image_size": stage.image_size,
                "train/samples_per_second": report.samples_seen / max(1e-9, time.perf_counter() - started)})
        done_steps = step + 1
        if done_steps == stage.steps or (recipe.checkpoint_every and done_steps % recipe.checkpoint_every == 0):
            report.wall_time_s = time.perf_counter() - started
            report.stream_positions = [batches.stream_positions()]
            _save_point(state, model, index, done_steps, run, [*done, report])
    _load_params(model, jax.device_get(state.params))
    report.wall_time_s = time.perf_counter() - started
    return report


def _load_params(model: CLIP, params: Any) -> None:
    from reclip_eval.flax_models.convert import flax_to_torch

    state = flax_to_torch(params, model.config)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})


def _save_point(state: Any, model: CLIP, index: int, step: int, run: RunContext, reports: list[StageReport]) -> None:
    import jax

    from reclip_eval.flax_models.convert import flax_to_torch

    weights = flax_to_torch(jax.device_get(state.params), model.config)
    arrays = {jax.tree_util.keystr(path): np.asarray(leaf)
              for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(state.opt_state))[0]}
    optimizer_state = {"param_groups": [], "state": {OPTAX_STATE: {k: torch.from_numpy(np.array(v))
                                                                   for k, v in arrays.items()}}}
    save_resume_point(run.out_dir, model_state={k: torch.from_numpy(v) for k, v in weights.items()},
                      optimizer_state=optimizer_state, scheduler={"step": step}, stage_index=index, step=step,
                      reports=reports, keep=run.recipe.keep_checkpoints, recipe_yaml=recipe_to_yaml(run.recipe),
                      settings=run.settings)


def restore_state(state: Any, point: ResumePoint) -> Any:
    """`state` (freshly initialised for the stage) with the optimizer state and step of `point`; the weights came
    in through the torch model (replay_resume_point). The process RNGs come back too, before the data stream is
    opened, as the torch trainer restores them (the loader's workers take their base seed from torch's)."""
    import jax
    from safetensors.numpy import load_file

    tensors = load_file(str(point.path / "optimizer.safetensors"))  # read once: optax arrays and torch's RNG
    restore_rng(point.state["rng"], torch.from_numpy(tensors["__torch_rng__"]))
    names = point.state["optimizer"]["state"].get(OPTAX_STATE)
    if names is None:
        raise TrainingError(f"{point.path}: holds a torch optimizer state, not a jax one")
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state.opt_state)
    restored = []
    for path, leaf in leaves:
        key = jax.tree_util.keystr(path)
        if key not in names or tensors[names[key]["tensor"]].shape != leaf.shape:
            raise TrainingError(f"{point.path}: optimizer state {key} is missing or has another shape; resume with "
                                "the same recipe")
        restored.append(jax.device_put(tensors[names[key]["tensor"]].astype(leaf.dtype), leaf.sharding))
    step = jax.device_put(np.int32(point.step), state.step.sharding)
    return state._replace(step=step, opt_state=jax.tree_util.tree_unflatten(treedef, restored))

