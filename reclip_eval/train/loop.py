"""The training loop: stages run in order; a stage with another image size first resamples the image position
embedding (the paper's weight upsampling, logged); each stage gets its own optimizer (param rules:
train/param_rules.py) and warmup + decay schedule (train/schedule.py).

    train         check the batches, open the run folder, prepare the shards, build the model, check the param rules
                  of every stage, replay a resume point (--resume), run each stage, write the checkpoint
    run_stage     start the stage (size, placement, optimizer, schedule, report, data), then one `_train_step` per
                  step, a resume point every checkpoint_every steps and at the end

One process, or one per device under torchrun (train/parallel.py: DDP or FSDP); exact resume in train/resume.py.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reclip_eval.checkpoint import CONFIG_NAME, save_checkpoint
from reclip_eval.config import to_dict
from reclip_eval.data.shards import list_shards, train_batches
from reclip_eval.data.synth.export import made_by_current_generator, write_train_shards
from reclip_eval.device import autocast, resolve_device, resolve_precision
from reclip_eval.distributed import barrier, gather_ints, init_from_env, is_main_process, rank_and_size
from reclip_eval.errors import ReclipError
from reclip_eval.models.clip import CLIP
from reclip_eval.models.token_reduction import mask_generators
from reclip_eval.paths import default_data_dir
from reclip_eval.train.chunked import chunked_contrastive_backward
from reclip_eval.train.init_from import InitWeights, init_settings, prepare_init, run_record
from reclip_eval.train.metrics_log import MetricsLog
from reclip_eval.train.optim import build_optimizer, optimizer_groups
from reclip_eval.train.out_dir import STAGES_DIR, finish_run, open_out_dir, start_run
from reclip_eval.train.parallel import StageModel, prepare_stage_model
from reclip_eval.train.recipe import RecipeConfig, StageConfig, recipe_to_yaml, written_by
from reclip_eval.train.report import StageReport, training_record
from reclip_eval.train.resume import (
    ResumeError,
    ResumePoint,
    gather_training_state,
    latest_resume_point,
    list_resume_points,
    load_model_weights,
    load_optimizer_and_rng,
    resume_settings,
    save_resume_point,
    settings_mismatches,
)
from reclip_eval.train.schedule import build_scheduler
from reclip_eval.train.slip import count_stage_compute, split_views, training_loss, without_slip_head
from reclip_eval.train.stage_setup import (
    TrainingError,
    build_model,
    caption_tokens,
    check_batches,
    check_param_rules,
    check_slip,
    rules_source,
    shape_for_stage,
    stage_taggers,
    stage_transform,
    stream_seed,
)

log = logging.getLogger(__name__)
SAVE_DTYPES = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class RunContext:
    """What every stage of one run shares."""

    recipe: RecipeConfig
    shards: list[str]
    device: str
    workers: int
    out_dir: Path
    settings: dict[str, Any]  # `resume_settings`, recorded in each resume point
    metrics: MetricsLog | None = None
    backend: str = "torch"  # what trains (recorded in training.json): this trainer, or jax_train's
    devices: int | None = None  # devices the run trains on (None: one per process)
    taggers: dict[str, str] | None = None  # stage -> part-of-speech tagger of its syntax reduction (stage_taggers)
    init: dict[str, Any] | None = None  # the checkpoint the run started from (train/init_from.py), recorded

    @property
    def precision(self) -> str:
        return resolve_precision(self.recipe.precision, self.device)


@dataclass
class _Stage:
    """One stage while it runs: `placed` is the model as this process trains it (train/parallel.py); the master
    model gets the weights back at the end."""

    index: int
    config: StageConfig
    placed: StageModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    report: StageReport
    batches: Any  # data/shards.py's stream: next() -> (pixels, tokens)
    chunked: bool  # micro-batches through train/chunked.py


def prepare_shards(recipe: RecipeConfig, data_dir: Path | None, workers: int) -> list[str]:
    root = Path(data_dir) if data_dir else default_data_dir()
    try:
        shards = list_shards(recipe.data.shards, root)
        if recipe.data.synth is None or made_by_current_generator(Path(shards[0]).parent, recipe.data.synth):
            return shards
    except ReclipError:
        if recipe.data.synth is None:
            raise
    log.info("training shards missing: generating %d synthetic samples under %s", recipe.data.synth.train_samples,
             root)
    write_train_shards(root, recipe.data.synth, workers=max(1, workers))
    return list_shards(recipe.data.shards, root)


def stage_report(model: CLIP, stage: StageConfig, resume: ResumePoint | None, run: RunContext,
                 text_resize: str | None = None) -> StageReport:
    """The stage's report: the one `resume` holds, or a new one with the compute per sample and the tokens that
    enter each tower (after reduction) counted now."""
    if resume is not None:
        log.info("stage %s: resuming at step %d from %s", stage.name, resume.step, resume.path)
        return StageReport.from_state(resume.state["reports"][-1])
    compute, _ = count_stage_compute(model.config, stage, run.recipe.slip)
    return StageReport(stage.name, stage.image_size, stage.text_length, stage.batch_size, stage.steps, 0, 0.0,
                       (model.config.vision.grid_size,) * 2, compute.total_gmacs,
                       image_tokens=stage.image_tokens.describe(), image_tokens_kept=compute.image_tokens,
                       text_tokens=stage.text_tokens.describe((run.taggers or {}).get(stage.name)),
                       text_pos_embed=text_resize)


def stage_batches(run: RunContext, model: CLIP, index: int, report: StageReport, first_step: int, *, rank: int = 0,
                  world: int = 1) -> Any:
    """Stage `index`'s data stream from `first_step`: each process draws its own stream (seeded by stage and rank)
    and contributes batch_size / world pairs."""
    stage, recipe = run.recipe.stages[index], run.recipe
    tokenize, reduce_text = caption_tokens(recipe, index, rank, (run.taggers or {}).get(stage.name))
    transform = stage_transform(stage, model.config.preprocess, slip=recipe.slip is not None)
    return train_batches(run.shards, transform, tokenize, reduce_text=reduce_text,
                         augment=bool(stage.augment) or recipe.slip is not None,
                         batch_size=stage.batch_size // world,
                         seed=stream_seed(recipe, index, rank), shuffle_buffer=recipe.data.shuffle_buffer,
                         workers=run.workers, skip_batches=first_step, counts_so_far=report.data_skipped,
                         stream_positions=report.stream_positions[rank] if report.stream_positions else None,
                         pin_memory=run.device.startswith("cuda"),
                         draft=stage.image_size if recipe.data.decode == "draft" else None)


def _start_stage(model: CLIP, index: int, run: RunContext, resume: ResumePoint | None) -> _Stage:
    """Size and place the model, build the stage's optimizer and schedule, restore them from `resume` (whose RNG
    states come back before the data stream is drawn), and open the data stream at the first step to run."""
    stage, recipe = run.recipe.stages[index], run.recipe
    rank, world = rank_and_size()
    check_batches([stage])
    local_batch = stage.batch_size // world
    text_resize = shape_for_stage(model, recipe, stage)  # resamples position tables (logged) only on a change
    model.train()
    model.set_activation_checkpointing(recipe.activation_checkpointing)
    # A new stage may have replaced the position embedding: wrap (or shard) again after resizing.
    placed = prepare_stage_model(model, recipe.data_parallel, run.device, compile=recipe.compile)
    groups = optimizer_groups(placed.module, stage.optimizer, rules_source(recipe, stage))
    optimizer = build_optimizer(placed.module, stage.optimizer, run.device, groups=groups)
    scheduler = build_scheduler(optimizer, stage.lr_schedule())
    first_step = 0
    if resume is not None:
        load_optimizer_and_rng(resume, placed.module, optimizer, scheduler)
        first_step = resume.step
    report = stage_report(model, stage, resume, run, text_resize)
    report.param_rules = groups.counts()
    batches = stage_batches(run, model, index, report, first_step, rank=rank, world=world)
    chunked = bool(stage.micro_batch_size) and stage.micro_batch_size < local_batch
    return _Stage(index, stage, placed, optimizer, scheduler, report, batches, chunked)


def non_finite_loss(stage: StageConfig, step: int, loss: float, out_dir: Path) -> TrainingError:
    """The error that stops a run whose loss became NaN/inf, naming the resume point to go back to."""
    points = list_resume_points(out_dir)
    last = f"the last good state is {points[-1].path} (--resume continues from it)" if points else \
        "no resume point was written yet"
    return TrainingError(f"stage {stage.name!r} step {step}: loss is {loss}; stopping: {last}")


def _train_step(s: _Stage, step: int, run: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on the next batch; returns (loss, temperature scale). A non-finite loss stops the run
    before its gradients touch the weights."""
    stage = s.config
    pixels, tokens = next(s.batches)
    pixels, tokens = pixels.to(run.device, non_blocking=True), tokens.to(run.device, non_blocking=True)
    pixels, views = split_views(pixels)  # SLIP's two extra views, when the recipe has its branch
    s.optimizer.zero_grad(set_to_none=True)

    def cast():
        return autocast(run.device, run.precision)

    masking = stage.image_tokens if stage.image_tokens.masks else None
    generator = mask_generators(masking, pixels.device, run.recipe.seed, s.index, step, rank_and_size()[0])

    if s.chunked:  # forward and backward, micro-batch by micro-batch
        loss, scale = chunked_contrastive_backward(s.placed.net, pixels, tokens, stage.micro_batch_size,
                                                   image_tokens=masking, generator=generator, autocast=cast)
    else:
        with cast():
            outputs = s.placed.net(pixels, tokens, masking, generator(0), views)
            loss, scale = training_loss(outputs, run.recipe.slip), outputs[2]
    if not torch.isfinite(loss):
        raise non_finite_loss(stage, step, loss.item(), run.out_dir)
    if not s.chunked:
        loss.backward()
    s.placed.average_unsharded_gradients()
    if stage.optimizer.grad_clip_norm:
        torch.nn.utils.clip_grad_norm_(s.placed.module.parameters(), stage.optimizer.grad_clip_norm)
    s.optimizer.step()
    s.scheduler.step()
    return loss, scale


def _log_step(s: _Stage, step: int, loss: torch.Tensor, scale: torch.Tensor, run: RunContext, progress: Any,
              done: list[StageReport], started: float) -> None:
    lr = s.scheduler.get_last_lr()[0]
    progress.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", temp=f"{scale.item():.1f}")
    if run.metrics is not None:
        global_step = sum(r.steps for r in done) + step
        run.metrics.scalars(global_step, {
            "train/loss": loss.item(), "train/lr": lr, "train/temperature_scale": scale.item(),
            "train/image_size": s.config.image_size,
            "train/samples_per_second": s.report.samples_seen / max(1e-9, time.perf_counter() - started),
        })
    log.debug("stage %s step %d loss %.4f", s.config.name, step, loss.item())


def _save_resume_point(s: _Stage, done_steps: int, run: RunContext, done: list[StageReport], started: float) -> None:
    """Every process takes part (gathers); the first one writes."""
    s.report.wall_time_s = time.perf_counter() - started
    s.report.stream_positions = gather_ints(s.batches.stream_positions(), run.device)  # collective
    model_state, optimizer_state = gather_training_state(s.placed.module, s.optimizer)  # collective (FSDP)
    if is_main_process():
        save_resume_point(run.out_dir, model_state=model_state, optimizer_state=optimizer_state,
                          scheduler=s.scheduler.state_dict(), stage_index=s.index, step=done_steps,
                          reports=[*done, s.report],
                          keep=run.recipe.keep_checkpoints, recipe_yaml=recipe_to_yaml(run.recipe),
                          settings=run.settings)
    barrier()


def run_stage(model: CLIP, index: int, run: RunContext, done: list[StageReport],
              resume: ResumePoint | None = None) -> StageReport:
    """Run stage `index` of the recipe on `model` (from `resume`'s step when given); `done` are the reports of the
    stages before it. The trained weights are in `model` when it returns."""
    s = _start_stage(model, index, run, resume)
    stage, recipe, report = s.config, run.recipe, s.report
    first_step = resume.step if resume is not None else 0
    started = time.perf_counter() - report.wall_time_s
    from tqdm import tqdm

    progress = tqdm(range(first_step, stage.steps), desc=f"stage {stage.name} ({stage.image_size}px)", unit="step",
                    disable=rank_and_size()[0] != 0, initial=first_step, total=stage.steps)
    for step in progress:
        loss, scale = _train_step(s, step, run)
        report.losses.append(loss.item())
        report.samples_seen += stage.batch_size
        report.data_skipped = s.batches.counts()
        if step % recipe.log_every == 0 or step == stage.steps - 1:
            _log_step(s, step, loss, scale, run, progress, done, started)
        done_steps = step + 1
        if done_steps == stage.steps or (recipe.checkpoint_every and done_steps % recipe.checkpoint_every == 0):
            _save_resume_point(s, done_steps, run, done, started)
    s.placed.write_back(model)
    report.wall_time_s = time.perf_counter() - started
    return report


def train(recipe: RecipeConfig, out_dir: str | Path, *, data_dir: Path | None = None, device: str = "auto",
          workers: int | None = None, save_stages: bool = True, resume: bool = False,
          wandb_project: str | None = None, init: InitWeights | None = None) -> tuple[CLIP, list[StageReport]]:
    """Run every stage of `recipe` and write the checkpoint to `out_dir` (stage checkpoints in out_dir/stages/).
    Curves go to TensorBoard (recipe.tensorboard) and to the W&B project `wandb_project` when given. A recipe with
    `init:` starts from `init`, its weights loaded by reclip_eval.zoo.init_weights.load_init(recipe.init).

    `resume=True` continues from the newest intact resume point in `out_dir/resume/` (same recipe, same number of
    processes, data workers and shards, all checked), so the loss curve continues exactly as if the run had never
    stopped. What `out_dir` may hold is decided first (train/out_dir.py); nothing the run did not write is deleted."""
    device = init_from_env(resolve_device(device))  # under torchrun: join the group, one device per process
    workers = recipe.data.workers if workers is None else workers
    out_dir = Path(out_dir)
    main, world = is_main_process(), rank_and_size()[1]
    check_batches(recipe.stages)  # found now, not at the start of a later stage
    check_slip(recipe, device)
    taggers = stage_taggers(recipe)  # a missing tagger stops the run before its folder or data are touched
    init = prepare_init(recipe, init)  # so do init weights that do not fit the recipe
    shards = open_run(recipe, out_dir, data_dir, workers, resume)
    run = RunContext(recipe, shards, device, workers, out_dir, init_settings(resume_settings(workers, world, shards),
                                                                             init),
                     taggers=taggers, init=run_record(init))
    model = build_model(recipe, init)
    check_param_rules(model, recipe)
    reports, point = replay_resume_point(model, run, save_stages) if resume else ([], None)
    resumed_at = None
    if point is not None:
        resumed_at = sum(s.steps for s in recipe.stages[:point.stage_index]) + point.step
    # A new run in a folder where a killed run left curves: purge_step 0 drops them instead of mixing them in.
    run.metrics = MetricsLog(out_dir, recipe.tensorboard and main, purge_step=resumed_at or 0,
                             wandb_project=wandb_project if main else None, config=to_dict(recipe))
    for index in range(len(reports), len(recipe.stages)):
        start = point if point is not None and point.stage_index == index else None
        reports.append(run_stage(model, index, run, reports, start))
        if save_stages and index < len(recipe.stages) - 1 and main:
            save_stage(model, index, run, reports)
    run.metrics.close()
    if main:
        # File by file into the run folder: whatever else is in it (the user's files) stays.
        with without_slip_head(model):  # the checkpoint is the dual encoder
            save_checkpoint(model.cpu(), out_dir, recipe_yaml=recipe_to_yaml(recipe),
                            training=training_record(recipe.name, reports, device, world, init=run.init),
                            dtype=SAVE_DTYPES[recipe.save_dtype], in_place=True)
        finish_run(out_dir, recipe.name)
    barrier()
    return model, reports


def open_run(recipe: RecipeConfig, out_dir: Path, data_dir: Path | None, workers: int, resume: bool) -> list[str]:
    """Decide what `out_dir` may hold (before any data, model or file is touched), then prepare the shards (the
    first process; possibly generating them) and mark the run started."""
    main = is_main_process()
    open_out_dir(out_dir, resume=resume)
    barrier()  # every process has looked at out_dir before the first one writes into it
    if not main:
        barrier()  # the first process prepares (possibly generates) the shards
    shards = prepare_shards(recipe, data_dir, workers)
    if main:
        start_run(out_dir, recipe.name, resume=resume)
        barrier()
    return shards


def replay_resume_point(model: CLIP, run: RunContext, save_stages: bool
                        ) -> tuple[list[StageReport], ResumePoint | None]:
    """Bring `model` to the newest intact resume point of `run.out_dir`: its image size, then its weights. Returns
    the reports of the stages finished by then and the point to continue a stage from (None when the point ended
    its stage; a stage checkpoint a kill left unwritten is written now)."""
    recipe = run.recipe
    # Tensor names do not depend on the stage's image size.
    point = _check_resume_point(latest_resume_point(run.out_dir, set(model.state_dict())), recipe, run.settings)
    for stage in recipe.stages[:point.stage_index + 1]:  # the model as it was at that point: shape, then weights
        shape_for_stage(model, recipe, stage)
    load_model_weights(point, model)
    reports = [StageReport.from_state(r) for r in point.state["reports"][:point.stage_index]]
    if point.step < recipe.stages[point.stage_index].steps:
        return reports, point
    reports.append(StageReport.from_state(point.state["reports"][point.stage_index]))  # that stage had finished
    # A kill between this point and the stage checkpoint left no stages/NAME: these weights are its.
    stage_dir = run.out_dir / STAGES_DIR / recipe.stages[point.stage_index].name
    if save_stages and point.stage_index < len(recipe.stages) - 1 and is_main_process() and \
            not (stage_dir / CONFIG_NAME).is_file():
        save_stage(model, point.stage_index, run, reports)
    return reports, None


def save_stage(model: CLIP, index: int, run: RunContext, reports: list[StageReport]) -> None:
    """The checkpoint of stage `index` in out/stages/NAME."""
    recipe = run.recipe
    devices = rank_and_size()[1] if run.devices is None else run.devices
    with without_slip_head(model):
        save_checkpoint(model, run.out_dir / STAGES_DIR / recipe.stages[index].name,
                        recipe_yaml=recipe_to_yaml(recipe),
                        training=training_record(recipe.name, reports, run.device, devices, backend=run.backend,
                                                 init=run.init),
                        dtype=SAVE_DTYPES[recipe.save_dtype])


def _check_resume_point(point: ResumePoint | None, recipe: RecipeConfig, settings: dict[str, Any]) -> ResumePoint:
    if point is None:  # open_out_dir has refused a --resume without points
        raise ResumeError("no resume point to continue from")
    if not written_by(point.state.get("recipe"), recipe, str(point.path)):
        raise TrainingError(f"{point.path}: was written by another recipe (or other overrides); resume with the "
                            "same recipe and overrides, or use a new --out")
    recorded = point.state.get("settings")
    if recorded is None:
        log.warning("%s: written before resume points recorded workers, processes and shards; they are not checked",
                    point.path)
        return point
    problems = settings_mismatches(recorded, settings)
    if problems:
        raise TrainingError(f"{point.path}: the run would not continue exactly: {'; '.join(problems)}")
    return point
