"""Issue 36 item 1: a stage's data stream is keyed by (recipe seed, stage, rank) as separate keys, so two seeds'
runs never share a stream; runs stored before the change keep (and resume with) the additive seeding."""

import itertools

import pytest

import reclip_eval.train.loop as loop
from reclip_eval.train.loop import train
from reclip_eval.train.recipe import load_recipe, parse_recipe_yaml, recipe_to_yaml, written_by
from reclip_eval.train.stage_setup import stream_seed


def test_keyed_streams_differ_for_every_seed_stage_and_rank():
    recipes = {seed: load_recipe("tiny-shapes", [f"seed={seed}"]) for seed in range(5)}
    seeds = [stream_seed(recipes[s], stage, rank) for s, stage, rank in itertools.product(range(5), range(4), range(4))]
    assert len(set(seeds)) == len(seeds)


def test_additive_streams_are_the_seeding_before_issue_36():
    """What the committed miniature rows were trained with: seed 0's finetune reads seed 1's main-phase stream."""
    seed0 = load_recipe("tiny-shapes", ["seed=0", "data.stream_seeds=additive"])
    seed1 = load_recipe("tiny-shapes", ["seed=1", "data.stream_seeds=additive"])
    assert stream_seed(seed0, 1) == stream_seed(seed1, 0) == 1
    assert stream_seed(seed0, 0, rank=2) == 20_000


def test_a_recipe_stored_before_the_key_reads_as_additive_and_resumes_so():
    keyed = load_recipe("tiny-shapes")
    assert keyed.data.stream_seeds == "keyed"
    stored = recipe_to_yaml(keyed).replace("  stream_seeds: keyed\n", "")
    assert "stream_seeds" not in stored
    assert parse_recipe_yaml(stored, "old.yaml").data.stream_seeds == "additive"
    # A resume point written before the change does not continue under the new streams ...
    assert not written_by(stored, keyed, "old.yaml")
    # ... but does with the old seeding asked for.
    assert written_by(stored, load_recipe("tiny-shapes", ["data.stream_seeds=additive"]), "old.yaml")


def test_an_unknown_seeding_is_refused_naming_the_key():
    with pytest.raises(Exception, match="data.stream_seeds"):
        load_recipe("tiny-shapes", ["data.stream_seeds=sum"])


@pytest.mark.parametrize("seeding", ["keyed", "additive"])
def test_the_trainer_draws_each_stage_from_its_stream_seed(synth_dir, tmp_path, monkeypatch, seeding):
    drawn = []
    real = loop.train_batches

    def recording(*args, **kwargs):
        drawn.append(kwargs["seed"])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_batches", recording)
    recipe = load_recipe("tiny-shapes", ["seed=4", f"data.stream_seeds={seeding}", "stages.0.steps=2",
                                         "stages.0.batch_size=8", "stages.0.warmup_steps=0", "stages.1.steps=2",
                                         "stages.1.warmup_steps=0", "stages.1.batch_size=8"])
    train(recipe, tmp_path / "run", data_dir=synth_dir, device="cpu", workers=0)
    assert drawn == [stream_seed(recipe, 0), stream_seed(recipe, 1)]
    if seeding == "additive":
        assert drawn == [4, 5]
    else:
        assert 5 not in drawn and len(set(drawn)) == 2
