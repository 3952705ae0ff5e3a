"""The training loop: stages run in order; a stage with another image size first resamples the image position
embedding (the paper's weight upsampling, logged); each stage gets its own optimizer and warmup + decay schedule.

One process, or one per device under torchrun (train/parallel.py: DDP or FSDP); exact resume in train/resume.py.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reclip_eval.checkpoint import CONFIG_NAME, save_checkpoint
from reclip_eval.config import to_dict
from reclip_eval.data.shards import list_shards, train_batches
from reclip_eval.data.synth.export import made_by_current_generator, write_train_shards
from reclip_eval.data.transforms import image_transform
from reclip_eval.device import resolve_device, resolve_precision
from reclip_eval.distributed import barrier, gather_ints, init_from_env, is_main_process, rank_and_size
from reclip_eval.errors import ReclipError
from reclip_eval.models.clip import CLIP
from reclip_eval.models.flops import count_sample_compute
from reclip_eval.models.presets import with_image_size
from reclip_eval.models.tokenizer import ClipTokenizer
from reclip_eval.paths import default_data_dir
from reclip_eval.train.chunked import chunked_contrastive_backward
from reclip_eval.train.loss import contrastive_loss
from reclip_eval.train.metrics_log import MetricsLog
from reclip_eval.train.optim import build_optimizer, lr_factor
from reclip_eval.train.out_dir import STAGES_DIR, finish_run, open_out_dir, start_run
from reclip_eval.train.parallel import prepare_stage_model
from reclip_eval.train.recipe import RecipeConfig, StageConfig, recipe_to_yaml
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

log = logging.getLogger(__name__)
_DTYPES = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


class TrainingError(ReclipError):
    """Training cannot go on (e.g. the loss became NaN/inf)."""


@dataclass
class StageReport:
    name: str
    image_size: int
    text_length: int
    batch_size: int
    steps: int
    samples_seen: int
    wall_time_s: float
    pos_embed_grid: tuple[int, int]
    gmacs_per_sample: float  # forward, image + text (models/flops.py); training costs about 3x this
    losses: list[float] = field(default_factory=list)  # one per step
    data_skipped: dict[str, dict[str, int]] = field(default_factory=dict)  # this process's (data/shards.py)
    # Per process, per loader worker: raw samples of its data stream used by the last resume point (dropped samples
    # make it more than steps x batch), what exact resume skips to.
    stream_positions: list[list[int]] = field(default_factory=list)


def prepare_shards(recipe: RecipeConfig, data_dir: Path | None, workers: int) -> list[str]:
    root = Path(data_dir) if data_dir else default_data_dir()
    try:
        shards = list_shards(recipe.data.shards, root)
        if recipe.data.synth is None or made_by_current_generator(Path(shards[0]).parent):
            return shards
    except ReclipError:
        if recipe.data.synth is None:
            raise
    log.info("training shards missing: generating %d synthetic samples under %s", recipe.data.synth.train_samples,
             root)
    write_train_shards(root, recipe.data.synth, workers=max(1, workers))
    return list_shards(recipe.data.shards, root)


def build_model(recipe: RecipeConfig) -> CLIP:
    config = with_image_size(recipe.model.build(source=f"recipe {recipe.name}"), recipe.stages[0].image_size)
    torch.manual_seed(recipe.seed)
    return CLIP(config)


def _batch_problems(stage: StageConfig, world: int) -> list[str]:
    """How `stage`'s batch does not split over `world` processes. (A per-process batch of one is fine: the loss
    runs over the gathered global batch, which the recipe schema keeps at two pairs or more.)"""
    if stage.batch_size % world:
        return [f"stage {stage.name!r}: batch_size {stage.batch_size} is the global batch and must be divisible by "
                f"the {world} processes"]
    local_batch = stage.batch_size // world
    if stage.micro_batch_size and local_batch % stage.micro_batch_size:
        return [f"stage {stage.name!r}: micro_batch_size {stage.micro_batch_size} must divide the per-process batch "
                f"{local_batch} (batch_size {stage.batch_size} / {world} processes)"]
    return []


def run_stage(model: CLIP, stage: StageConfig, stage_index: int, recipe: RecipeConfig, shards: list[str],
              device: str, workers: int, out_dir: Path, done: list[StageReport],
              resume: ResumePoint | None = None, metrics: MetricsLog | None = None,
              settings: dict[str, Any] | None = None) -> StageReport:
    """Run one stage (from `resume`'s step when given); `done` are the reports of the stages before it.
    `settings` (`resume_settings`) are recorded in each resume point."""
    rank, world = rank_and_size()
    problems = _batch_problems(stage, world)
    if problems:
        raise TrainingError("; ".join(problems))
    local_batch = stage.batch_size // world
    chunked = bool(stage.micro_batch_size) and stage.micro_batch_size < local_batch
    if model.config.vision.image_size != stage.image_size:
        old = model.config.vision.grid_size
        model.set_image_size(stage.image_size)
        log.info("stage %s: image size -> %d px, position embedding upsampled %dx%d -> %dx%d", stage.name,
                 stage.image_size, old, old, model.config.vision.grid_size, model.config.vision.grid_size)
    model.train()
    model.set_activation_checkpointing(recipe.activation_checkpointing)
    # A new stage may have replaced the position embedding: wrap (or shard) again after resizing.
    trained = prepare_stage_model(model, recipe.data_parallel, device)
    net = torch.compile(trained.net) if recipe.compile else trained.net
    optimizer = build_optimizer(trained.module, stage.optimizer, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(stage))
    transform = image_transform(stage.image_size, model.config.preprocess)
    tokenizer = ClipTokenizer(stage.text_length)
    # Each process draws its own stream (seeded by stage and rank) and contributes batch_size / world pairs.
    first_step = 0
    if resume is not None:
        load_optimizer_and_rng(resume, trained.module, optimizer, scheduler)
        first_step = resume.step
        report = StageReport(**{**resume.state["reports"][-1], "pos_embed_grid": (model.config.vision.grid_size,) * 2})
        log.info("stage %s: resuming at step %d from %s", stage.name, first_step, resume.path)
    else:
        compute = count_sample_compute(model.config, stage.image_size, stage.text_length, stage.mask_ratio)
        report = StageReport(stage.name, stage.image_size, stage.text_length, stage.batch_size, stage.steps, 0, 0.0,
                             (model.config.vision.grid_size,) * 2, compute.total_gmacs)
    batches = train_batches(shards, transform, tokenizer, batch_size=local_batch,
                            seed=recipe.seed + stage_index + 10_000 * rank, shuffle_buffer=recipe.data.shuffle_buffer,
                            workers=workers, skip_batches=first_step, counts_so_far=report.data_skipped,
                            stream_positions=report.stream_positions[rank] if report.stream_positions else None,
                            pin_memory=torch.device(device).type == "cuda")
    precision = resolve_precision(recipe.precision, device)
    started = time.perf_counter() - report.wall_time_s
    from tqdm import tqdm

    progress = tqdm(range(first_step, stage.steps), desc=f"stage {stage.name} ({stage.image_size}px)", unit="step",
                    disable=rank != 0, initial=first_step, total=stage.steps)
    def autocast():
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")

    for step in progress:
        pixels, tokens = next(batches)
        pixels, tokens = pixels.to(device, non_blocking=True), tokens.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        if chunked:
            loss, scale = chunked_contrastive_backward(net, pixels, tokens, stage.micro_batch_size,
                                                       mask_ratio=stage.mask_ratio, autocast=autocast)
        else:
            with autocast():
                image_emb, text_emb, scale = net(pixels, tokens, mask_ratio=stage.mask_ratio)
                loss = contrastive_loss(image_emb.float(), text_emb.float(), scale.float())
        if not torch.isfinite(loss):
            points = list_resume_points(out_dir)
            last = f"the last good state is {points[-1].path} (--resume continues from it)" if points else \
                "no resume point was written yet"
            raise TrainingError(f"stage {stage.name!r} step {step}: loss is {loss.item()}; stopping: {last}")
        if not chunked:
            loss.backward()
        trained.average_unsharded_gradients()
        if stage.optimizer.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(trained.module.parameters(), stage.optimizer.grad_clip_norm)
        optimizer.step()
        scheduler.step()
        report.losses.append(loss.item())
        report.samples_seen += stage.batch_size
        report.data_skipped = batches.counts()
        if step % recipe.log_every == 0 or step == stage.steps - 1:
            progress.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}",
                                 temp=f"{scale.item():.1f}")
            if metrics is not None:
                global_step = sum(s.steps for s in done) + step
                metrics.scalars(global_step, {
                    "train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0],
                    "train/temperature_scale": scale.item(), "train/image_size": stage.image_size,
                    "train/samples_per_second": report.samples_seen / max(1e-9, time.perf_counter() - started),
                })
            log.debug("stage %s step %d loss %.4f", stage.name, step, loss.item())
        done_steps = step + 1
        if done_steps == stage.steps or (recipe.checkpoint_every and done_steps % recipe.checkpoint_every == 0):
            report.wall_time_s = time.perf_counter() - started
            report.stream_positions = gather_ints(batches.stream_positions(), device)  # collective
            model_state, optimizer_state = gather_training_state(trained.module, optimizer)  # collective (FSDP)
            if is_main_process():
                save_resume_point(out_dir, model_state=model_state, optimizer_state=optimizer_state,
                                  scheduler=scheduler, stage_index=stage_index, step=done_steps,
                                  reports=[*done, report], keep=recipe.keep_checkpoints,
                                  recipe_yaml=recipe_to_yaml(recipe), settings=settings)
            barrier()
    trained.write_back(model)
    report.wall_time_s = time.perf_counter() - started
    return report


def train(recipe: RecipeConfig, out_dir: str | Path, *, data_dir: Path | None = None, device: str = "auto",
          workers: int | None = None, save_stages: bool = True, resume: bool = False,
          wandb_project: str | None = None) -> tuple[CLIP, list[StageReport]]:
    """Run every stage of `recipe` and write the checkpoint to `out_dir` (stage checkpoints in out_dir/stages/).
    Curves go to TensorBoard (recipe.tensorboard) and to the W&B project `wandb_project` when given.

    `resume=True` continues from the newest intact resume point in `out_dir/resume/` (same recipe, same number of
    processes, data workers and shards, all checked), so the loss curve continues exactly as if the run had never
    stopped. What `out_dir` may hold is decided first (train/out_dir.py); nothing the run did not write is deleted."""
    device = init_from_env(resolve_device(device))  # under torchrun: join the group, one device per process
    workers = recipe.data.workers if workers is None else workers
    out_dir = Path(out_dir)
    main = is_main_process()
    problems = [p for stage in recipe.stages for p in _batch_problems(stage, rank_and_size()[1])]
    if problems:  # found now, not at the start of a later stage
        raise TrainingError("; ".join(problems))
    open_out_dir(out_dir, resume=resume)  # refuses before any data, model or file is touched
    barrier()  # every process has looked at out_dir before the first one writes into it
    if not main:
        barrier()  # the first process prepares (possibly generates) the shards
    shards = prepare_shards(recipe, data_dir, workers)
    if main:
        start_run(out_dir, recipe.name, resume=resume)
        barrier()
    world = rank_and_size()[1]
    settings = resume_settings(workers, world, shards)
    model = build_model(recipe)
    reports: list[StageReport] = []
    point = None
    if resume:  # tensor names do not depend on the stage's image size
        point = _check_resume_point(latest_resume_point(out_dir, set(model.state_dict())), recipe, settings)
    if point is not None:
        for stage in recipe.stages[:point.stage_index + 1]:  # the model as it was at that point: size, then weights
            if model.config.vision.image_size != stage.image_size:
                model.set_image_size(stage.image_size)
        load_model_weights(point, model)
        reports = [StageReport(**{**r, "pos_embed_grid": tuple(r["pos_embed_grid"])})
                   for r in point.state["reports"][:point.stage_index]]
        if point.step == recipe.stages[point.stage_index].steps:  # that stage had finished
            reports.append(StageReport(**{**point.state["reports"][point.stage_index],
                                          "pos_embed_grid": tuple(point.state["reports"][point.stage_index]
                                                                  ["pos_embed_grid"])}))
            # A kill between this point and the stage checkpoint left no stages/NAME: these weights are its.
            stage_dir = out_dir / STAGES_DIR / recipe.stages[point.stage_index].name
            if save_stages and point.stage_index < len(recipe.stages) - 1 and main and \
                    not (stage_dir / CONFIG_NAME).is_file():
                _save_stage(model, point.stage_index, recipe, reports, device, world, out_dir)
            point = None
    resumed_at = None
    if point is not None:
        resumed_at = sum(s.steps for s in recipe.stages[:point.stage_index]) + point.step
    # A new run in a folder where a killed run left curves: purge_step 0 drops them instead of mixing them in.
    metrics = MetricsLog(out_dir, recipe.tensorboard and main, purge_step=resumed_at or 0,
                         wandb_project=wandb_project if main else None, config=to_dict(recipe))
    for index, stage in enumerate(recipe.stages):
        if index < len(reports):
            continue
        start = point if point is not None and point.stage_index == index else None
        reports.append(run_stage(model, stage, index, recipe, shards, device, workers, out_dir, reports, start,
                                 metrics, settings))
        if save_stages and index < len(recipe.stages) - 1 and main:
            _save_stage(model, index, recipe, reports, device, world, out_dir)
    metrics.close()
    if main:
        # File by file into the run folder: whatever else is in it (the user's files) stays.
        save_checkpoint(model.cpu(), out_dir, recipe_yaml=recipe_to_yaml(recipe),
                        training=training_record(recipe, reports, device, world), dtype=_DTYPES[recipe.save_dtype],
                        in_place=True)
        finish_run(out_dir, recipe.name)
    barrier()
    return model, reports


def _save_stage(model: CLIP, index: int, recipe: RecipeConfig, reports: list[StageReport], device: str, world: int,
                out_dir: Path) -> None:
    save_checkpoint(model, out_dir / STAGES_DIR / recipe.stages[index].name, recipe_yaml=recipe_to_yaml(recipe),
                    training=training_record(recipe, reports, device, world), dtype=_DTYPES[recipe.save_dtype])


def _check_resume_point(point: ResumePoint | None, recipe: RecipeConfig, settings: dict[str, Any]
                        ) -> ResumePoint | None:
    if point is None:  # open_out_dir has refused a --resume without points
        raise ResumeError("no resume point to continue from")
    if point.state.get("recipe") != recipe_to_yaml(recipe):
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


def training_record(recipe: RecipeConfig, reports: list[StageReport], device: str, devices: int = 1) -> dict[str, Any]:
    """What the checkpoint records about its training: stages, compute per sample, samples seen, device-hours."""
    return {
        "recipe": recipe.name,
        "device": device if device == "cpu" else torch.cuda.get_device_name(torch.device(device)),
        "devices": devices,
        "device_hours": round(devices * sum(r.wall_time_s for r in reports) / 3600, 4),
        "stages": [
            {
                "name": r.name, "image_size": r.image_size, "text_length": r.text_length,
                "batch_size": r.batch_size, "steps": r.steps, "samples_seen": r.samples_seen,
                "gmacs_per_sample": round(r.gmacs_per_sample, 4),
                "device_hours": round(devices * r.wall_time_s / 3600, 4),
                "wall_time_s": round(r.wall_time_s, 2), "pos_embed_grid": list(r.pos_embed_grid),
                "loss_first": round(r.losses[0], 4) if r.losses else None,
                "loss_last": round(r.losses[-1], 4) if r.losses else None,
                "losses": [round(x, 4) for x in r.losses],
                "data_skipped": r.data_skipped,
            }
            for r in reports
        ],
        "samples_seen": sum(r.samples_seen for r in reports),
        "wall_time_s": round(sum(r.wall_time_s for r in reports), 2),
    }
