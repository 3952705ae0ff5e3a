"""Registry-driven checks over every data file, and the one-way data flow of the design notes."""

import ast
from pathlib import Path

import pytest

from reclip_eval.eval.tasks import list_tasks, read_templates
from reclip_eval.paths import data_folder
from reclip_eval.train.recipe import clip_recipe_files, load_recipe
from reclip_eval.zoo.cards import list_cards

PACKAGE = Path(__file__).resolve().parents[1] / "reclip_eval"


@pytest.mark.parametrize("name", sorted(clip_recipe_files()))  # detector recipes: tests/test_detect_train.py
def test_every_recipe_loads(name):
    recipe = load_recipe(name)
    assert recipe.name == name and recipe.stages


def test_every_yaml_under_the_data_folders_is_a_known_kind():
    """Named YAML files sit directly in their folder; the only nested ones are bundled checkpoints' recipes."""
    for folder in ("training", "tasks", "model_cards"):
        nested = [p for p in data_folder(folder).rglob("*.yaml")
                  if p.parent != data_folder(folder) and not (p.parent / "config.json").is_file()]
        assert not nested, f"YAML files in sub-folders are not loaded by name: {nested}"


def test_every_task_and_card_loads():
    for task in list_tasks():
        if task.templates:
            assert read_templates(task.resource(task.templates))
    for card in list_cards():
        card.config()
        if card.recipe:
            recipe = load_recipe(card.recipe)
            # The card's architecture is what its recipe trains (at the last stage's image size).
            assert recipe.model.build().text == card.config().text
            assert recipe.stages[-1].image_size == card.config().vision.image_size


# Data flows one way (design.md): models <- zoo/data <- eval/train <- cards <- cli. Nothing reaches back.
FORBIDDEN = {
    "models": {"eval", "train", "cli", "zoo", "cards", "data", "checkpoint"},
    "data": {"eval", "train", "cli", "zoo", "cards"},
    "zoo": {"eval", "train", "cli", "cards"},
    "eval": {"train", "cli", "cards"},
    "train": {"eval", "cli", "cards", "zoo"},
    "detect": {"train", "cli", "cards"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("reclip_eval."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("reclip_eval.")}
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_backward_imports(package):
    for path in (PACKAGE / package).rglob("*.py"):
        bad = _imports(path) & FORBIDDEN[package]
        # The model class exposes the Hub mixin hooks, which delegate to reclip_eval.checkpoint lazily.
        if path.name == "clip.py":
            bad -= {"checkpoint"}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


# Detection tasks need a trained detector, not a CLIP model: tests/test_detect_train.py runs shapes-lvis end to end.
@pytest.mark.parametrize("task", [t.name for t in list_tasks() if t.synth is not None and t.kind != "detection"])
def test_every_synthetic_task_runs_end_to_end(task, tiny_checkpoint, tmp_path):
    from reclip_eval.eval.runner import EvalOptions, evaluate
    from reclip_eval.eval.tasks import load_task
    from reclip_eval.zoo.resolve import load_adapter

    results = evaluate(load_adapter(str(tiny_checkpoint)), load_task(task), EvalOptions(data_dir=tmp_path, workers=0))
    assert results["counts"]["images_evaluated"] > 0 and results["counts"]["images_skipped"] == 0
    assert results["task"]["synthetic_manifest"]["set"] == load_task(task).synth_set
