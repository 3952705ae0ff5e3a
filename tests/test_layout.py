"""Registry-driven checks over every data file, and the one-way data flow of the design notes."""

import ast
from pathlib import Path

import pytest

from reclip_eval.classifier.templates import read_templates
from reclip_eval.eval.tasks import TASK_SUBFOLDERS, list_tasks
from reclip_eval.paths import data_folder
from reclip_eval.train.recipe import clip_recipe_files, load_recipe
from reclip_eval.zoo.entries import list_entries

PACKAGE = Path(__file__).resolve().parents[1] / "reclip_eval"


@pytest.mark.parametrize("name", sorted(clip_recipe_files()))  # detector recipes: tests/test_detect_train.py
def test_every_recipe_loads(name):
    recipe = load_recipe(name)
    assert recipe.name == name and recipe.stages


def test_every_yaml_under_the_data_folders_is_a_known_kind():
    """Named YAML files sit directly in their folder; the only nested ones are bundled checkpoints' recipes, the
    generated tasks' sub-folders of tasks/ (TASK_SUBFOLDERS) and tasks/suites/."""
    loaded = {data_folder("tasks") / sub for sub in (*TASK_SUBFOLDERS, "suites")}
    for folder in ("training", "tasks", "zoo"):
        nested = [p for p in data_folder(folder).rglob("*.yaml")
                  if p.parent != data_folder(folder) and not (p.parent / "config.json").is_file()
                  and p.parent not in loaded]
        assert not nested, f"YAML files in sub-folders are not loaded by name: {nested}"


def test_every_task_and_zoo_entry_loads():
    for task in list_tasks():
        templates = task.templates_copy if task.templates == "from_data" else task.templates
        if templates:
            assert read_templates(task.resource(templates))
    for entry in list_entries():
        entry.config()  # its recipe's, or (a model trained elsewhere) its own: tests/test_zoo_entries.py
        entry.paper_numbers()


# Data flows one way (design.md). Every package and top-level module of reclip_eval sits in exactly one layer and
# imports only from layers before its own (lazy imports inside functions included); no exemptions. Units of one
# layer do not import each other. docs/design.md draws the same list.
LAYERS: list[set[str]] = [
    {"errors", "paths", "distributed", "atomic", "names"},  # no reclip_eval imports at all
    # device: resolves --device / --precision, refusing what the machine cannot do with the project's errors.
    {"config", "registry", "hub", "run_folder", "metrics", "classifier", "compute_results", "device"},
    {"models"},  # no I/O
    # paper_tables: the paper's numbers, below all that show them; flax_models: the same dual encoder in flax,
    # from the configs of `models` (it reads no files).
    {"checkpoint", "data", "paper_tables", "flax_models"},
    {"train"},
    {"jax_train"},  # the jax trainer runs the torch trainer's recipes, folders and resume points (train/loop.py)
    {"zoo"},  # a named model's architecture is what its recipe trains (zoo/entries.py reads train/recipe.py)
    {"detect"},
    {"eval"},
    # Read results files and the task declarations: the task kinds (eval/task_kinds.py) give the leaderboard its
    # cells and the cards their Hub task types; the task specs name the synthetic twins.
    {"cards", "leaderboard"},
    {"publish", "kinds"},  # publish renders a card when missing
    {"compute"},
    {"api"},  # the Python API (load, evaluate), which the CLI runs evaluation through
    {"cli"},
    {"__main__", "__init__"},
]
LAYER_OF = {unit: index for index, units in enumerate(LAYERS) for unit in units}


def _imports(path: Path) -> set[str]:
    """The reclip_eval units (top-level package or module) that `path` imports, anywhere in the file."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("reclip_eval."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "reclip_eval":
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("reclip_eval.")}
    return names


def _unit(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "_data" not in p.relative_to(PACKAGE).parts)


def test_every_unit_is_in_exactly_one_layer():
    units = {_unit(p) for p in SOURCES}
    placed = [unit for layer in LAYERS for unit in layer]
    assert len(placed) == len(set(placed)), "a unit is listed in two layers"
    assert units == set(placed), f"not in a layer: {sorted(units - set(placed))}; gone: {sorted(set(placed) - units)}"


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(PACKAGE)) for p in SOURCES])
def test_imports_point_down_the_layers(path):
    unit = _unit(path)
    upward = sorted(name for name in _imports(path) - {unit} if LAYER_OF[name] >= LAYER_OF[unit])
    assert not upward, (f"{path.relative_to(PACKAGE)} (layer {LAYER_OF[unit]}) imports {upward} "
                        f"(layers {[LAYER_OF[n] for n in upward]})")


# Detection tasks need a trained detector, not a CLIP model: tests/test_detect_train.py runs shapes-lvis end to end.
@pytest.mark.parametrize("task", [t.name for t in list_tasks() if t.synth is not None and t.kind != "detection"])
def test_every_synthetic_task_runs_end_to_end(task, tiny_checkpoint, tmp_path):
    from reclip_eval.eval.runner import EvalOptions, evaluate
    from reclip_eval.eval.tasks import load_task
    from reclip_eval.zoo.resolve import load_adapter

    results = evaluate(load_adapter(str(tiny_checkpoint)), load_task(task), EvalOptions(data_dir=tmp_path, workers=0))
    assert results["counts"]["images_evaluated"] > 0 and results["counts"]["images_skipped"] == 0
    assert results["task"]["synthetic_manifest"]["set"] == load_task(task).synth_set
