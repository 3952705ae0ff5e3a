"""Train the open-vocabulary detector from a CLIP checkpoint on an LVIS-format set's base categories.

Schedule (ViTDet, Li et al. 2022, whose LVIS recipe RO-ViT (Kim et al. 2023) starts from): AdamW, linear warmup
from 0.001x, step decay x0.1 at the recipe's fractions of the steps, layer-wise lr decay over the ViT blocks,
no weight decay on norms, biases, position and background embeddings; large-scale jitter (data.py). Base
categories only, text-embedding classifier (F-VLM, Kuo et al. 2023). The run ends with a checkpoint written file
by file (checkpoint.py; an --out that is not new, empty or ours is refused first) that carries the starting CLIP
model unchanged for open-vocabulary inference.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from reclip_eval.checkpoint import WEIGHTS_NAME, CheckpointSource, file_sha256, load_model
from reclip_eval.data.synth.export import synthesize
from reclip_eval.detect.checkpoint import LoadedDetector, check_out_dir, detector_card, save_detector
from reclip_eval.detect.config import DetectRecipe, detect_recipe_to_yaml
from reclip_eval.detect.data import LvisSet, LvisTrainDataset, collate_lists, read_lvis
from reclip_eval.detect.model import OpenVocabDetector
from reclip_eval.detect.vocabulary import read_templates_file, text_embeddings
from reclip_eval.device import autocast, resolve_device, resolve_precision
from reclip_eval.errors import ConfigError, DataError, MissingWeightsError
from reclip_eval.models.clip import CLIP
from reclip_eval.paths import default_data_dir
from reclip_eval.train.param_rules import ParamGroups, param_groups
from reclip_eval.train.schedule import build_scheduler
from reclip_eval.zoo.resolve import checkpoint_source

log = logging.getLogger(__name__)


@dataclass
class DetectTrainReport:
    steps: int
    losses: list[float] = field(default_factory=list)  # total loss at each logged step
    wall_time_s: float = 0.0
    skipped_images: list[dict] = field(default_factory=list)


def resolve_backbone(spec: str) -> CheckpointSource:
    """A CLIP checkpoint directory, `hf-hub:org/name[@rev]`, or a named model with weights (the resolver's)."""
    try:
        return checkpoint_source(spec)
    except MissingWeightsError as e:  # the resolver's advice names the evaluation flags; this command's is --backbone
        raise MissingWeightsError(f"{e}\n  (for `detect train`: --backbone runs/{spec} once trained, or --backbone "
                                  "hf-hub:org/name)") from None


def load_backbone_clip(spec: str, random_init: bool, seed: int) -> tuple[CLIP, dict]:
    """The CLIP model the detector starts from, and what to record about it. `random_init` keeps the architecture
    and draws fresh weights for both towers (the no-language-pretraining baseline)."""
    source = resolve_backbone(spec)
    clip = load_model(source.path)
    info = {"backbone": spec, "backbone_path": str(source.path), "backbone_hub_commit": source.commit,
            "backbone_sha256": file_sha256(source.path / WEIGHTS_NAME), "random_init": random_init}
    if random_init:
        torch.manual_seed(seed)
        clip = CLIP(clip.config).eval()
        info["backbone_sha256"] = None
    return clip, info


def locate_lvis(recipe: DetectRecipe, data_dir: str | Path | None, workers: int) -> LvisSet:
    """The recipe's annotation file under the data root (or the root itself), generated when synthetic."""
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    data = recipe.data
    if data_dir and data.synth is not None and not root.is_dir():  # a typo must not become a folder of generated data
        raise DataError(f"--data-dir {root}: no such folder (the synthetic LVIS set would be generated there): "
                        "create it first, or leave --data-dir out to generate into the cache")
    folder = root / data.folder
    if not (folder / data.annotations).is_file() and (root / data.annotations).is_file():
        folder = root
    if not (folder / data.annotations).is_file() and data.synth is not None:
        log.info("generating the synthetic LVIS set under %s", root)
        synthesize(root, data.synth, sets=["lvis"], workers=workers)
        folder = root / data.folder
    images = Path(data.images) if Path(data.images).is_absolute() else folder / data.images
    return read_lvis(folder / data.annotations, images)


def optimizer_groups(detector: OpenVocabDetector, recipe: DetectRecipe) -> ParamGroups:
    """AdamW groups of the recipe's `schedule.param_rules`; rules with `layer_decay` scale the lr by
    layer_decay^(depth - layer) over the backbone (ViTDet)."""
    backbone, schedule, source = detector.backbone, recipe.schedule, f"recipe {recipe.name}: schedule"
    depth, decay = len(backbone.blocks) + 1, recipe.detector.backbone.layer_decay

    def layer_scale(name: str) -> float:
        if not name.startswith("backbone."):
            raise ConfigError(source, [f"param_rules: {name}: layer_decay applies to backbone.* parameters only"])
        return decay ** (depth - backbone.layer_id(name[len("backbone."):]))

    return param_groups(detector.named_parameters(), schedule.param_rules, lr=schedule.lr,
                        weight_decay=schedule.weight_decay, source=source, layer_scale=layer_scale)


def train_detector(recipe: DetectRecipe, backbone: str, out: str | Path, *, data_dir: str | Path | None = None,
                   device: str = "auto", random_init: bool = False, workers: int | None = None
                   ) -> tuple[LoadedDetector, DetectTrainReport]:
    check_out_dir(out)  # before the backbone or any data is touched: a folder that is not ours is refused
    device = resolve_device(device)
    precision = resolve_precision(recipe.precision, device)
    workers = recipe.data.workers if workers is None else workers
    started = time.perf_counter()
    clip, source_info = load_backbone_clip(backbone, random_init, recipe.seed)
    lvis = locate_lvis(recipe, data_dir, max(1, workers))
    vocabulary = [c for c in lvis.categories if c.frequency in recipe.data.train_frequencies]
    templates = read_templates_file(recipe.detector.classifier.templates)
    torch.manual_seed(recipe.seed)
    detector = OpenVocabDetector(clip, recipe.detector).to(device)
    clip = clip.to(device)
    detector.set_vocabulary(text_embeddings(clip, vocabulary, templates, source_info["backbone_sha256"]))
    fill = tuple(clip.config.preprocess.mean)
    schedule = recipe.schedule
    dataset = LvisTrainDataset(lvis, vocabulary, recipe.detector.backbone.image_size, schedule.lsj_scale, fill)
    generator = torch.Generator().manual_seed(recipe.seed)
    sampler = RandomSampler(dataset, replacement=True, num_samples=schedule.steps * schedule.batch_size,
                            generator=generator)
    loader = DataLoader(dataset, batch_size=schedule.batch_size, sampler=sampler, collate_fn=collate_lists,
                        num_workers=workers, drop_last=True, generator=generator)
    groups = optimizer_groups(detector, recipe)
    optimizer = torch.optim.AdamW(groups.groups, lr=schedule.lr, betas=schedule.betas)
    scheduler = build_scheduler(optimizer, schedule.lr_schedule())
    report = DetectTrainReport(steps=0)
    detector.train()
    log.info("training on %d images, %d base categories (%d in the file), %d steps of %d", len(dataset),
             len(vocabulary), len(lvis.categories), schedule.steps, schedule.batch_size)
    from tqdm import tqdm

    # A progress bar as the CLIP trainer's (train/loop.py run_stage): a step takes seconds on a CPU, and the log
    # lines below come only every `log_every` steps.
    progress = tqdm(total=schedule.steps, desc=f"detector ({recipe.detector.backbone.image_size}px)", unit="step")
    for images, targets in loader:
        good = [i for i, image in enumerate(images) if image is not None]
        report.skipped_images += [{"image_id": targets[i]["image_id"], "reason": targets[i]["error"]}
                                  for i in range(len(images)) if images[i] is None]
        if not good:
            continue
        batch_images = [images[i].to(device) for i in good]
        batch_targets = [{k: v.to(device) for k, v in targets[i].items() if k != "image_id"} for i in good]
        with autocast(device, precision):
            losses = detector(batch_images, batch_targets)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if schedule.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(detector.parameters(), schedule.grad_clip_norm)
        optimizer.step()
        scheduler.step()
        report.steps += 1
        progress.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}",
                             refresh=False)
        progress.update()
        if report.steps % recipe.log_every == 0 or report.steps in (1, schedule.steps):
            report.losses.append(round(float(loss.detach()), 5))
            log.info("step %d/%d loss %.4f (%s)", report.steps, schedule.steps, float(loss.detach()),
                     ", ".join(f"{k.removeprefix('loss_')} {float(v.detach()):.3f}" for k, v in losses.items()))
    progress.close()
    report.wall_time_s = time.perf_counter() - started
    detector.eval()
    loaded = LoadedDetector(detector=detector, clip=clip, config=recipe.detector, templates=templates,
                            base_vocabulary=[c.name for c in vocabulary], extra={"source": source_info})
    training = {"recipe": recipe.name, "steps": report.steps, "images_seen": report.steps * schedule.batch_size,
                "losses": report.losses, "wall_time_s": round(report.wall_time_s, 2), "device": device,
                "precision": precision, "train_images": len(dataset), "annotations": str(lvis.path),
                "skipped_images": report.skipped_images, "param_rules": groups.counts(), **source_info}
    save_detector(out, loaded, recipe_yaml=detect_recipe_to_yaml(recipe), training=training,
                  card=detector_card(loaded, recipe.name, backbone, report.steps))
    return loaded, report
