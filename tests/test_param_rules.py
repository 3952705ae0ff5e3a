"""Optimizer parameter rules as data (train/param_rules.py) and the one lr-schedule module (train/schedule.py):
the default rules give exactly the groups of the hard-coded functions they replaced (kept here as the oracles),
on every CLIP recipe's model and on the detectors; the schedule kinds equal the replaced formulas step by step."""

import logging
import math

import pytest
import torch

from reclip_eval.config import from_dict, parse_with_overrides
from reclip_eval.detect.config import load_detect_recipe
from reclip_eval.detect.model import OpenVocabDetector
from reclip_eval.detect.train import optimizer_groups as detector_groups
from reclip_eval.errors import ConfigError
from reclip_eval.eval.tasks import load_task
from reclip_eval.models import CLIP, build_config
from reclip_eval.train.optim import optimizer_groups
from reclip_eval.train.param_rules import ParamRule, param_groups
from reclip_eval.train.recipe import OptimizerConfig, StageConfig, clip_recipe_files, load_recipe
from reclip_eval.train.schedule import LrSchedule, lr_factor
from tests.detect_helpers import TINY_DETECTOR


# --- the oracles: the code the rules replaced, verbatim -------------------------------------------------------
def _old_clip_groups(model, weight_decay):
    def decays(name, param):
        return param.ndim >= 2 and not name.endswith(("pos_embed", "cls_token"))

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if decays(name, param) else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _old_detector_groups(detector, base_lr, weight_decay, layer_decay):
    backbone = detector.backbone
    depth = len(backbone.blocks) + 1
    groups = {}
    for name, param in detector.named_parameters():
        if not param.requires_grad:
            continue
        scale = layer_decay ** (depth - backbone.layer_id(name[len("backbone."):])) if name.startswith("backbone.") \
            else 1.0
        no_decay = param.ndim <= 1 or name.endswith(("pos_embed", "background"))
        groups.setdefault((scale, 0.0 if no_decay else weight_decay), []).append(param)
    return [{"params": p, "lr": base_lr * s, "weight_decay": wd} for (s, wd), p in groups.items()]


def _old_clip_factor(stage):
    warmup, total, start, end = stage.warmup_steps, stage.steps, stage.start_lr_ratio, stage.end_lr_ratio

    def factor(step):
        if warmup and step < warmup:
            return start * (step + 1) / warmup
        if stage.schedule == "constant" or total <= warmup:
            return start
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if stage.schedule == "linear":
            return start - (start - end) * progress
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _old_detector_factor(step, steps, warmup_steps, decay_at):
    factor = 0.1 ** sum(step >= round(f * steps) for f in decay_at)
    if step < warmup_steps:
        factor *= 0.001 + (1 - 0.001) * step / warmup_steps
    return factor
# ---------------------------------------------------------------------------------------------------------------


def _settings(groups, names, default_lr):
    """Each parameter's (lr, weight decay), by name: group order and grouping do not change the update."""
    out = {}
    for group in groups:
        for param in group["params"]:
            out[names[id(param)]] = (group.get("lr", default_lr), group["weight_decay"])
    return out


def _names(module):
    return {id(p): n for n, p in module.named_parameters()}


@pytest.mark.parametrize("recipe_name", sorted(clip_recipe_files()))
def test_default_clip_rules_give_the_old_groups_on_every_recipe_model(recipe_name):
    recipe = load_recipe(recipe_name)
    with torch.device("meta"):
        model = CLIP(recipe.model.build())
    for stage in recipe.stages:
        config = stage.optimizer
        new = optimizer_groups(model, config).groups
        old = _old_clip_groups(model, config.weight_decay)
        assert _settings(new, _names(model), config.lr) == _settings(old, _names(model), config.lr)
        assert sum(len(g["params"]) for g in new) == len(list(model.parameters()))


@pytest.mark.parametrize("preset", ["tiny", "demo", "vit-l16-text12x1024"])
def test_default_clip_rules_give_the_old_groups_on_every_preset(preset):
    with torch.device("meta"):
        model = CLIP(build_config(preset))
    config = OptimizerConfig(weight_decay=0.05, lr=3e-4)
    new = optimizer_groups(model, config).groups
    assert _settings(new, _names(model), 3e-4) == _settings(_old_clip_groups(model, 0.05), _names(model), 3e-4)


@pytest.mark.parametrize(("preset", "recipe_name", "overrides"), [
    ("tiny", "detect-shapes", TINY_DETECTOR),
    ("demo", "detect-shapes", []),
    ("tiny", "detect-shapes", [*TINY_DETECTOR, "detector.backbone.freeze=true", "detector.backbone.layer_decay=0.6"]),
])
def test_default_detector_rules_give_the_old_groups(preset, recipe_name, overrides):
    recipe = load_detect_recipe(recipe_name, overrides)
    torch.manual_seed(0)
    detector = OpenVocabDetector(CLIP(build_config(preset)), recipe.detector)
    schedule = recipe.schedule
    new = detector_groups(detector, recipe).groups
    old = _old_detector_groups(detector, schedule.lr, schedule.weight_decay, recipe.detector.backbone.layer_decay)
    assert _settings(new, _names(detector), None) == _settings(old, _names(detector), None)
    assert len({(g["lr"], g["weight_decay"]) for g in new}) == len(old)  # the same number of groups
    if not recipe.detector.backbone.freeze:
        assert len(old) > 2  # layer decay makes several groups: the comparison has teeth


def test_first_match_wins_and_the_counts_are_logged(caplog):
    model = CLIP(build_config("tiny"))
    rules = [ParamRule(match=r"text\..*", lr_scale=0.5), ParamRule(match=".*", max_ndim=1, weight_decay=0.0),
             ParamRule(match=".*")]
    with caplog.at_level(logging.DEBUG, logger="reclip_eval.train.param_rules"):
        groups = param_groups(model.named_parameters(), rules, lr=1.0, weight_decay=0.1, source="test")
    text = [n for n, _ in model.named_parameters() if n.startswith("text.")]
    assert all(groups.matched[n] == r"text\..*" for n in text)  # text biases too: the first rule took them
    assert groups.matched["logit_scale"] == ".* (ndim<=1)"
    assert sum(groups.counts().values()) == len(list(model.parameters()))
    by_param = _settings(groups.groups, _names(model), None)
    assert by_param["text.norm.bias"] == (0.5, 0.1) and by_param["visual.norm.bias"] == (1.0, 0.0)
    assert "parameter text.norm.bias -> rule text\\..*" in caplog.text
    assert f"test: param_rules text\\..* -> {len(text)}, .* (ndim<=1) -> " in caplog.text


def test_an_uncovered_parameter_is_an_error_naming_it_and_the_recipe(synth_dir, tmp_path):
    from reclip_eval.train.loop import train

    recipe = load_recipe("tiny-shapes", ["stages.1.optimizer.param_rules=[{match: 'visual\\..*'}]"])
    with pytest.raises(ConfigError, match=r"(?s)tiny-shapes: stages\.hires\.optimizer.*'logit_scale'"):
        train(recipe, tmp_path / "run", data_dir=synth_dir, device="cpu", workers=0)
    assert not (tmp_path / "run" / "resume").exists()  # found before the first stage ran, not at the second


def test_rules_are_checked_as_data():
    with pytest.raises(ConfigError, match=r"stages\[0\]\.optimizer\.param_rules\[0\]\.match: not a valid regular"):
        load_recipe("tiny-shapes", ["stages.0.optimizer.param_rules=[{match: '(unclosed'}]"])
    with pytest.raises(ConfigError, match="only the detector backbone has layer-wise lr decay"):
        load_recipe("tiny-shapes", ["stages.0.optimizer.param_rules=[{match: '.*', layer_decay: true}]"])
    with pytest.raises(ConfigError, match=r"param_rules\[0\]\.lr_scle: unknown key; did you mean 'lr_scale'"):
        load_detect_recipe("detect-shapes", ["schedule.param_rules=[{match: '.*', lr_scle: 2}]"])


def test_the_matches_are_recorded_in_training_json(synth_dir, tmp_path):
    import json

    from reclip_eval.train.loop import train

    recipe = load_recipe("tiny-shapes", ["stages.0.steps=2", "stages.1.steps=1", "stages.0.warmup_steps=0",
                                         "stages.1.warmup_steps=0"])
    train(recipe, tmp_path / "run", data_dir=synth_dir, device="cpu", workers=0)
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    counts = record["stages"][1]["param_rules"]
    assert list(counts) == [".* (ndim<=1)", ".*(pos_embed|cls_token)", ".*"]
    assert counts[".*(pos_embed|cls_token)"] == 2 and sum(counts.values()) == len(list(CLIP(build_config("tiny")).parameters()))


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
@pytest.mark.parametrize(("steps", "warmup", "start", "end"), [(50, 5, 1.0, 0.0), (40, 0, 0.7, 0.1), (3, 3, 1.0, 0.0)])
def test_clip_schedule_kinds_equal_the_replaced_formula(schedule, steps, warmup, start, end):
    stage = StageConfig("s", 16, 16, 4, steps, warmup_steps=warmup, schedule=schedule, start_lr_ratio=start,
                        end_lr_ratio=end)
    new, old = lr_factor(stage.lr_schedule()), _old_clip_factor(stage)
    assert [new(step) for step in range(steps + 2)] == [old(step) for step in range(steps + 2)]


@pytest.mark.parametrize(("steps", "warmup", "decay_at"), [(200, 20, [0.889, 0.963]), (3, 1, [0.34, 0.67]), (10, 0, [])])
def test_the_detector_schedule_is_the_step_kind_of_the_same_function(steps, warmup, decay_at):
    recipe = load_detect_recipe("detect-shapes", [f"schedule.steps={steps}", f"schedule.warmup_steps={warmup}",
                                                  f"schedule.decay_at={decay_at}"])
    new = lr_factor(recipe.schedule.lr_schedule())
    assert [new(s) for s in range(steps + 1)] == [_old_detector_factor(s, steps, warmup, decay_at)
                                                  for s in range(steps + 1)]
    with pytest.raises(Exception, match="unknown lr schedule 'stepp'.*Did you mean: step"):
        lr_factor(LrSchedule("stepp", 10))


def test_the_detector_recipe_names_its_synthetic_world_by_task():
    recipe = load_detect_recipe("detect-shapes")
    assert recipe.data.synth == load_task("shapes-lvis").synth
    with pytest.raises(Exception, match="unknown task 'shapes-lviz'"):
        load_detect_recipe("detect-shapes", ["data.synth=shapes-lviz"])
    with pytest.raises(ConfigError, match="data.synth: task 'imagenet' .* has no synth settings"):
        load_detect_recipe("detect-shapes", ["data.synth=imagenet"])


def test_a_good_recipe_is_parsed_once():
    calls = []

    def parse(data):
        calls.append(data)
        return from_dict(OptimizerConfig, data, source="x.yaml")

    assert parse_with_overrides(parse, {"lr": 0.1}, ["weight_decay=0.2"], "x.yaml").weight_decay == 0.2
    assert len(calls) == 1
    with pytest.raises(ConfigError, match=r"command-line override lr=-1 \(recipe x.yaml\)"):
        parse_with_overrides(parse, {"lr": 0.1}, ["lr=-1"], "x.yaml")
    with pytest.raises(ConfigError, match="invalid config x.yaml:"):  # the file itself is broken: named
        parse_with_overrides(parse, {"lr": -1}, ["weight_decay=0.2"], "x.yaml")
