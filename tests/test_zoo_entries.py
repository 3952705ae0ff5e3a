"""Zoo entries (zoo/NAME.yaml): one source for each fact. The architecture comes from the recipe, or, without one,
from the entry; the paper's numbers come from the tables file through the entry's row references."""

from pathlib import Path

import pytest
import yaml

from reclip_eval.errors import ConfigError
from reclip_eval.paper_tables import load_paper_tables
from reclip_eval.paths import data_folder
from reclip_eval.zoo.entries import load_entry


def _entry(tmp_path: Path, **keys) -> Path:
    path = tmp_path / "my-model.yaml"
    path.write_text(yaml.safe_dump({"name": "my-model", "description": "a test entry", **keys}))
    return path


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_entry(str(path))
    assert str(path) in str(caught.value)
    return str(caught.value)


def test_architecture_comes_from_the_recipe_at_its_last_stage(tmp_path):
    recipe = yaml.safe_load((data_folder("training") / "mini-reclip-32.yaml").read_text())  # a flat recipe
    recipe["stages"][-1]["image_size"] = 48
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    config = load_entry(str(_entry(tmp_path, recipe=str(tmp_path / "recipe.yaml")))).config()
    assert config.vision.image_size == 48 and config.vision.width == 128  # the mini preset, resized as trained


def test_an_entry_without_a_recipe_states_its_architecture(tmp_path):
    config = load_entry(str(_entry(tmp_path, architecture={"preset": "tiny"}))).config()
    assert config.vision.image_size == 32 and config.text.width == 32
    assert "architecture: required when no recipe is named" in _error(_entry(tmp_path))


def test_an_entry_stating_both_is_an_error_naming_the_file(tmp_path):
    message = _error(_entry(tmp_path, recipe="mini-reclip-32", architecture={"preset": "mini"}))
    assert "architecture: stated, but recipe 'mini-reclip-32' already defines it" in message


def test_paper_numbers_are_the_tables_file_rows(tmp_path):
    entry = load_entry("reclip-64")
    assert all(not hasattr(entry, key) for key in ("paper_results", "metrics"))
    rows = {(t.table, r.row): r.values for t in load_paper_tables().tables for r in t.rows}
    numbers = entry.paper_numbers()
    assert [(n.table, n.row) for n in numbers] == [(r.table, r.row) for r in entry.paper_rows]
    assert all(n.values == rows[n.table, n.row] for n in numbers)
    assert numbers[0].values["imagenet/top1"] == 73.3  # Table 1, RECLIP-64 (300k steps)


@pytest.mark.parametrize(("ref", "expected"), [
    ({"table": "Table 11", "row": "RECLIP-64 (300k steps)"},
     "paper_rows[0] (Table 11 / 'RECLIP-64 (300k steps)'): no table 'Table 11' in "
     "leaderboards/paper/reclip_tables.yaml; did you mean 'Table 1'"),
    ({"table": "Table 1", "row": "RECLIP-64 (301k steps)"},
     "paper_rows[0] (Table 1 / 'RECLIP-64 (301k steps)'): Table 1 has no row 'RECLIP-64 (301k steps)'; "
     "did you mean 'RECLIP-64 (300k steps)'"),
    ({"table": "Table 1", "row": "RECLIP-80 (300k steps)"},
     "paper_rows[0] (Table 1 / 'RECLIP-80 (300k steps)'): the tables file gives this row to model 'reclip-80', "
     "not 'my-model'"),
    ({"table": "Table 1", "row": "CLIP* (Radford et al., 2021)"}, "gives this row to no named model"),
])
def test_a_bad_paper_reference_is_an_error_naming_the_entry_and_the_reference(tmp_path, ref, expected):
    message = _error(_entry(tmp_path, recipe="mini-reclip-32", paper_rows=[ref]))
    assert expected in message and len(message.splitlines()) == 2  # "invalid config FILE:" and the one problem
