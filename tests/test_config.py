from dataclasses import dataclass, field
from typing import Literal

import pytest

from reclip_eval.config import apply_overrides, deep_merge, from_dict
from reclip_eval.errors import ConfigError
from reclip_eval.train.recipe import load_recipe


@dataclass(frozen=True)
class Inner:
    lr: float
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner
    sizes: list[int] = field(default_factory=list)
    maybe: int | None = None


def test_valid_nested_parse():
    out = from_dict(Outer, {"name": "x", "inner": {"lr": "1e-3", "mode": "b"}, "sizes": [1, 2], "maybe": None})
    assert out == Outer("x", Inner(1e-3, "b"), [1, 2], None)


def test_every_problem_reported_with_path_and_suggestion():
    with pytest.raises(ConfigError) as e:
        from_dict(Outer, {"nme": "x", "inner": {"lr": "fast", "mod": "a"}, "sizes": [1, "two"]}, source="f.yaml")
    message = str(e.value)
    assert "f.yaml" in message
    assert "nme: unknown key; did you mean 'name'?" in message
    assert "inner.mod: unknown key; did you mean 'mode'?" in message
    assert "inner.lr: expected a number, got 'fast'" in message
    assert "sizes[1]: expected an integer" in message
    assert "name: required key is missing" in message


def test_literal_and_bool_checks():
    with pytest.raises(ConfigError, match=r"inner.mode: 'c' is not one of 'a', 'b'"):
        from_dict(Outer, {"name": "x", "inner": {"lr": 1, "mode": "c"}})
    with pytest.raises(ConfigError, match="maybe: expected an integer or null, got True"):
        from_dict(Outer, {"name": "x", "inner": {"lr": 1}, "maybe": True})


def test_overrides_and_merge():
    data = {"a": {"b": 1}, "stages": [{"steps": 1}, {"steps": 2}]}
    out = apply_overrides(data, ["a.b=3", "stages.1.steps=20", "a.c=[1, 2]"])
    assert out == {"a": {"b": 3, "c": [1, 2]}, "stages": [{"steps": 1}, {"steps": 20}]}
    assert data["a"]["b"] == 1  # input untouched
    assert deep_merge({"x": {"y": 1, "z": [1]}}, {"x": {"z": [2]}}) == {"x": {"y": 1, "z": [2]}}
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides(data, ["novalue"])


def test_recipe_unknown_key_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ndescription: x\nmodel: {preset: tiny}\ndata: {shards: s}\n"
        "stages:\n  - {name: a, image_size: 16, text_length: 8, batch_size: 4, steps: 2, warmup_step: 1}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_recipe(str(bad))
    assert str(bad) in str(e.value)
    assert "stages[0].warmup_step: unknown key; did you mean 'warmup_steps'?" in str(e.value)


def test_stage_inheritance_and_override(tmp_path):
    recipe = load_recipe("tiny-shapes", ["stages.0.batch_size=8"])
    low, high = recipe.stages
    assert (low.image_size, high.image_size) == (16, 32)
    # The finetune stage states only image size, steps, lr and warmup: the rest is inherited.
    assert high.batch_size == 8 and high.text_length == low.text_length
    assert high.optimizer.name == "adamw" and high.optimizer.lr == pytest.approx(2e-4)


def test_base_recipe_patched_by_stage_name():
    f20k, base = load_recipe("reclip-64-f20k"), load_recipe("reclip-64")
    assert [s.steps for s in f20k.stages] == [250000, 20000]
    assert f20k.stages[0] == base.stages[0]
    assert f20k.stages[1].image_size == 224 and f20k.stages[1].optimizer.lr == pytest.approx(1e-4)


def test_text_length_beyond_context_is_rejected():
    with pytest.raises(ConfigError, match="text_length: 64 exceeds the model's context_length 16"):
        load_recipe("tiny-shapes", ["stages.0.text_length=64"])
