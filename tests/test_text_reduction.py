"""Text token reduction (models/text_reduction.py, data/syntax_tags.py, train/stage_setup.py): truncate equals CLIP's
tokenizer; random and block keep the budget, in order, drawn uniformly from an explicit generator; syntax equals
open_clip's `syntax_mask_tokenize` given the same tags and keeps nouns first on sentences whose answer is known; the
text position table resizes as open_clip's `resize_text_pos_embed`; recipes carry the spec and a two-stage run
records what it did."""

import json
from collections import Counter

import numpy as np
import pytest
import torch
import yaml
from open_clip import tokenizer as open_clip_tokenizer
from open_clip.model import resize_text_pos_embed

from reclip_eval.data.shards import list_shards, train_batches
from reclip_eval.data.syntax_tags import ADJECTIVE, NOUN, OTHER, VERB, load_tagger, resolve_tagger, wordnet_root
from reclip_eval.data.transforms import image_transform
from reclip_eval.errors import ConfigError
from reclip_eval.models.config import PreprocessConfig
from reclip_eval.models.pos_embed import resample_text_pos_embed
from reclip_eval.models.text_reduction import TextTokens, encode_captions, select_text_tokens
from reclip_eval.models.token_reduction import step_generator
from reclip_eval.models.tokenizer import ClipTokenizer
from reclip_eval.train.loop import train
from reclip_eval.train.recipe import load_recipe, parse_recipe_yaml, recipe_to_yaml
from reclip_eval.train.stage_setup import caption_tokens

LONG = "a photo of a large red circle next to a small striped square below a dotted green triangle at the top left"
SHORT = "a red circle"
DISTINCT = "photo of one large red circle next to some small striped square below the dotted green triangle at top left"
START, END = 49406, 49407


def _source(texts, length=77):
    return ClipTokenizer(length)(texts)


def _caption(row):
    """The caption tokens of one output row (between start and end)."""
    row = [int(t) for t in row]
    assert row[0] == START
    return row[1:row.index(END)]


def test_truncate_is_clip_tokenization():
    texts = [LONG, SHORT]
    encoded = encode_captions(texts, TextTokens(), 8, ClipTokenizer(8))
    assert torch.equal(encoded, open_clip_tokenizer.SimpleTokenizer()(texts, context_length=8))
    assert select_text_tokens(encoded, TextTokens(), 8, None) is encoded


@pytest.mark.parametrize("kind", ["random", "block"])
def test_draws_keep_the_budget_in_caption_order(kind):
    source = _source([LONG, SHORT, LONG])
    full = _caption(source[0])
    out = select_text_tokens(source, TextTokens(kind), 8, step_generator("cpu", 0))
    assert out.shape == (3, 8)
    for row in (out[0], out[2]):
        kept = _caption(row)
        assert len(kept) == 6 and row[-1] == END
        it = iter(full)
        assert all(t in it for t in kept)  # a subsequence: the caption's order is kept
        if kind == "block":  # one contiguous span of the caption
            assert any(full[i:i + 6] == kept for i in range(len(full) - 5))
    # A caption within the budget is untouched, as open_clip's tokenizers leave it.
    assert torch.equal(out[1], open_clip_tokenizer.random_mask_tokenize([SHORT], 8, START, END,
                                                                         open_clip_tokenizer.SimpleTokenizer().encode)[0])
    assert not torch.equal(out[0], out[2])  # drawn per caption
    again = select_text_tokens(source, TextTokens(kind), 8, step_generator("cpu", 0))
    assert torch.equal(out, again)  # the same generator, the same tokens
    assert not torch.equal(out, select_text_tokens(source, TextTokens(kind), 8, step_generator("cpu", 1)))


def test_random_and_block_draw_uniformly():
    """Each caption position is kept with probability budget / n (random); each start is drawn with 1 / (n - k + 1)
    (block). 4000 draws: a biased draw (say, the first tokens always) fails by many standard errors."""
    source = _source([DISTINCT] * 4000)  # no token twice: a kept token names its position
    assert len(set(_caption(source[0]))) == len(_caption(source[0]))
    n, budget = len(_caption(source[0])), 6
    for kind in ("random", "block"):
        out = select_text_tokens(source, TextTokens(kind), budget + 2, step_generator("cpu", 7))
        full = _caption(source[0])
        if kind == "random":
            hits = Counter(p for row in out for p in _kept_positions(full, row))
            rate = np.array([hits[p] for p in range(n)]) / 4000
            assert np.abs(rate - budget / n).max() < 4 * np.sqrt(budget / n * (1 - budget / n) / 4000)
        else:
            starts = Counter(_block_start(full, row) for row in out)
            assert sorted(starts) == list(range(n - budget + 1))
            expected = 4000 / (n - budget + 1)
            assert max(abs(c - expected) for c in starts.values()) < 5 * np.sqrt(expected)


def _block_start(full, row):
    kept = _caption(row)
    (start,) = [i for i in range(len(full) - len(kept) + 1) if full[i:i + len(kept)] == kept]
    return start


def _kept_positions(full, row):
    return [full.index(t) for t in _caption(row)]


def test_draws_need_a_generator_and_a_long_enough_source():
    with pytest.raises(ValueError, match="explicit torch.Generator"):
        select_text_tokens(_source([LONG]), TextTokens("random"), 8, None)
    with pytest.raises(ValueError, match="applied by the tokenizer"):
        select_text_tokens(_source([LONG]), TextTokens("syntax"), 8, None)


# Penn tags of the words of three captions where every word is one BPE piece, as a tagger gives them in context.
PENN = {"a": "DT", "large": "JJ", "red": "JJ", "circle": "NN", "sits": "VBZ", "on": "IN", "the": "DT",
        "wooden": "JJ", "table": "NN", "near": "IN", "small": "JJ", "blue": "JJ", "cup": "NN", "dog": "NN",
        "runs": "VBZ", "across": "IN", "green": "JJ", "field": "NN", "with": "IN", "ball": "NN", "two": "CD",
        "old": "JJ", "men": "NNS", "play": "VBP", "chess": "NN", "in": "IN", "park": "NN", "quietly": "RB"}
# Each caption with the budgets (in words) at which a whole priority group ends: within a group open_clip's order is
# numpy's default argsort, which is not stable (it kept "small blue" before "red wooden" here), ours is caption order.
CAPTIONS = {"a large red circle sits on the wooden table near a small blue cup": (3, 8, 9, 14),
            "a dog runs across the green field with a red ball": (3, 5, 6, 11),
            "two old men play chess quietly in the park": (3, 4, 5, 9)}


def test_syntax_equals_open_clip_given_the_same_tags(monkeypatch):
    """open_clip's syntax_mask_tokenize (NLTK tagging, here given the same tags) is the oracle, on captions of one
    BPE piece per word (where budgets in words and in pieces agree)."""
    import nltk

    tokenizer = ClipTokenizer(8)
    monkeypatch.setattr(nltk.tokenize, "word_tokenize", tokenizer.words)
    monkeypatch.setattr(nltk, "pos_tag", lambda words: [(w, PENN[w]) for w in words])
    monkeypatch.setattr(open_clip_tokenizer, "_nltk_init", True)  # its nltk.download calls need the network
    tag = load_tagger_from_penn()
    compared = 0
    for caption, budgets in CAPTIONS.items():
        for budget in budgets:
            ours = encode_captions([caption], TextTokens("syntax"), budget + 2, ClipTokenizer(budget + 2), tag)
            theirs = open_clip_tokenizer.syntax_mask_tokenize([caption], budget + 2, START, END,
                                                              open_clip_tokenizer.SimpleTokenizer().encode)
            assert torch.equal(ours, theirs), (caption, budget)
            compared += 1
    assert compared == 12
    caption = next(iter(CAPTIONS))
    decoded = tokenizer.decode(encode_captions([caption], TextTokens("syntax"), 8, tokenizer, tag)[0])
    assert decoded == "large red circle wooden table cup"  # the 3 nouns, then adjectives in caption order


def load_tagger_from_penn():
    from reclip_eval.data.syntax_tags import priorities_from_penn

    return lambda words: priorities_from_penn([PENN[w] for w in words])


def test_syntax_keeps_words_whole_within_a_budget_in_pieces():
    """A word of several BPE pieces is kept whole or not at all; open_clip counts words and truncates after."""
    tokenizer = ClipTokenizer(6)
    caption = "zebrafish swim near the aquarium"
    pieces = {w: len(tokenizer.encode_word(w)) for w in tokenizer.words(caption)}
    assert pieces["zebrafish"] > 1
    tags = {"zebrafish": NOUN, "swim": VERB, "near": OTHER, "the": OTHER, "aquarium": NOUN}
    out = encode_captions([caption], TextTokens("syntax"), 6, tokenizer, lambda ws: [tags[w] for w in ws])
    kept = tokenizer.decode(out[0])
    assert all(word in kept.split() or word not in kept for word in pieces)
    assert len(_caption(out[0])) <= 4


@pytest.mark.tagger("wordnet-lexicon")
def test_wordnet_lexicon_tags_nouns_adjectives_and_verbs():
    assert resolve_tagger() in ("nltk-perceptron", "wordnet-lexicon")
    tag = load_tagger("wordnet-lexicon")
    assert (wordnet_root() / "lexnames").is_file()
    words = "a brown dog waits for the bus while two children run across the street".split()
    got = dict(zip(words, tag(words), strict=True))
    assert [w for w in words if got[w] == NOUN] == ["dog", "bus", "children", "street"]
    assert [w for w in words if got[w] == ADJECTIVE] == ["brown"]
    assert [w for w in words if got[w] == VERB] == ["waits", "run"]
    tokenizer = ClipTokenizer(8)
    out = encode_captions(["a brown dog waits for the bus while two children run across the street"],
                          TextTokens("syntax"), 8, tokenizer, tag)
    assert tokenizer.decode(out[0]) == "brown dog waits bus children street"


def test_text_position_table_resizes_as_open_clip():
    table = torch.randn(1, 16, 12)
    for length in (8, 32, 16):
        state = {"positional_embedding": table[0].clone()}
        model = torch.nn.Module()
        model.positional_embedding = torch.nn.Parameter(torch.zeros(length, 12))
        resize_text_pos_embed(state, model)
        torch.testing.assert_close(resample_text_pos_embed(table, length)[0], state["positional_embedding"])
    assert resample_text_pos_embed(table, 16) is table


def _recipe_with(tmp_path, stages_extra, **top):
    raw = yaml.safe_load((load_recipe_path("tiny-shapes")).read_text())
    raw.update(top)
    for stage, extra in zip(raw["stages"], stages_extra, strict=False):
        stage.update(extra)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def load_recipe_path(name):
    from reclip_eval.registry import find_named_yaml

    return find_named_yaml("training", "recipe", name)


def test_recipe_spec_is_checked_replaced_whole_and_round_trips(tmp_path):
    path = _recipe_with(tmp_path, [{"text_tokens": {"kind": "syntax", "tagger": "wordnet-lexicon"}},
                                   {"text_tokens": {"kind": "random"}}])
    recipe = load_recipe(str(path))
    assert [s.text_tokens for s in recipe.stages] == [TextTokens("syntax", "wordnet-lexicon"), TextTokens("random")]
    assert parse_recipe_yaml(recipe_to_yaml(recipe), "stored") == recipe
    with pytest.raises(ConfigError, match=r"stages\[0\]\.text_tokens\.kind"):
        load_recipe(str(_recipe_with(tmp_path, [{"text_tokens": {"kind": "shuffle"}}])))
    with pytest.raises(ConfigError, match="tagger is for syntax reduction only"):
        load_recipe(str(_recipe_with(tmp_path, [{"text_tokens": {"kind": "random", "tagger": "wordnet-lexicon"}}])))
    with pytest.raises(ConfigError, match="text_positions: resize"):
        load_recipe(str(_recipe_with(tmp_path, [{"text_length": 99}])))
    assert load_recipe(str(_recipe_with(tmp_path, [{"text_length": 99}], text_positions="resize")))


def test_stream_draws_are_keyed_by_the_batch_so_a_resumed_stream_draws_the_same(synth_dir, tmp_path):
    recipe = load_recipe(str(_recipe_with(tmp_path, [{"text_length": 6, "text_tokens": {"kind": "random"}}])))
    tokenize, reduce_text = caption_tokens(recipe, 0, 0, None)
    shards = list_shards("shapes-train", synth_dir)
    transform = image_transform(16, PreprocessConfig())

    def stream(skip):
        return train_batches(shards, transform, tokenize, reduce_text=reduce_text, batch_size=8, seed=0,
                             shuffle_buffer=50, workers=0, skip_batches=skip)

    def take(skip, count):
        batches = stream(skip)
        return [next(batches)[1] for _ in range(count)]

    whole, resumed = take(0, 4), take(2, 2)
    assert all(t.shape == (8, 6) for t in whole)
    assert torch.equal(resumed[0], whole[2]) and torch.equal(resumed[1], whole[3])
    source = tokenize([LONG] * 8)  # the workers' tokens: the whole caption, reduced per batch index
    assert source.shape == (8, 77) and not torch.equal(reduce_text(source, 2), reduce_text(source, 3))
    assert torch.equal(reduce_text(source, 2), reduce_text(source, 2))


def test_two_stage_run_resizes_the_text_table_and_records_the_tokens(synth_dir, tmp_path):
    """CLIPA's shape: a short-text stage with reduced captions, then a longer-text stage with the text position
    table resized; the training record says what each tower computed on."""
    path = _recipe_with(tmp_path, [{"text_length": 8, "text_tokens": {"kind": "block"}, "steps": 3, "warmup_steps": 1},
                                   {"text_length": 16, "steps": 2, "warmup_steps": 1}], text_positions="resize")
    recipe = load_recipe(str(path))
    model, reports = train(recipe, tmp_path / "run", data_dir=synth_dir, device="cpu", workers=0)
    assert model.config.text.context_length == 16 and model.text.pos_embed.shape[1] == 16
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    low, high = record["stages"]
    assert (low["text_tokens"], low["text_tokens_kept"], low["text_pos_embed"]) == ("block", 8, None)
    assert high["text_tokens"] == "block"  # stages inherit the spec
    assert high["text_pos_embed"] == "8 -> 16 (linear, align_corners=False, antialias=False)"
    assert low["image_tokens"] == "resize" and low["image_tokens_kept"] == 4  # 16 px / patch 8: 2x2
    stage1 = json.loads((tmp_path / "run" / "stages" / "lowres" / "config.json").read_text())
    assert stage1["text"]["context_length"] == 8


def test_recipes_and_reports_written_before_the_specs_still_read():
    """A resume point's recipe text and stage report from before text_tokens, augment, text_positions and slip
    existed: the recipe compares equal (so the run resumes) and the report reads with what those runs did."""
    from reclip_eval.train.recipe import written_by
    from reclip_eval.train.report import StageReport

    recipe = load_recipe("tiny-shapes")
    raw = yaml.safe_load(recipe_to_yaml(recipe))
    for key in ("text_positions", "slip"):
        raw.pop(key)
    for stage in raw["stages"]:
        stage.pop("text_tokens"), stage.pop("augment")
    old = yaml.safe_dump(raw, sort_keys=False)
    assert old != recipe_to_yaml(recipe) and written_by(old, recipe, "old resume point")
    assert not written_by(old.replace("steps: 30", "steps: 31"), recipe, "old resume point")
    state = {"name": "lowres", "image_size": 16, "text_length": 16, "batch_size": 32, "steps": 30,
             "samples_seen": 0, "wall_time_s": 0.0, "pos_embed_grid": [2, 2], "gmacs_per_sample": 0.01}
    report = StageReport.from_state(state)
    assert (report.image_tokens, report.text_tokens, report.text_pos_embed) == ("resize", "truncate", None)


def _tag_each(words: list[str]) -> list[int]:
    tag = load_tagger("wordnet-lexicon")
    return [tag([word])[0] for word in words]


@pytest.mark.tagger("wordnet-lexicon")
def test_wordnet_tagger_loaded_before_a_fork_tags_alike_in_concurrent_workers():
    """Data workers forked after the main process loaded the tagger (resolve_tagger loads it to check it works) each
    read WordNet through their own files. NLTK's reader seeks and reads shared file objects: two workers on one
    inherited file offset read each other's lines, and a run on 2 workers crashed mid-stage (a None synset)."""
    import multiprocessing

    wordnet = wordnet_root()
    words = sorted({line.split(" ", 1)[0].replace("_", " ").split(" ")[0]
                    for pos in ("noun", "adj", "verb") for line in (wordnet / f"index.{pos}").read_text().splitlines()
                    if not line.startswith(" ")})[::40]  # about 2,500 words that need a lookup each
    _tag_each(["dog", "red", "run", "quickly"])  # the main process has read WordNet's files before the fork
    with multiprocessing.get_context("fork").Pool(2) as pool:
        halves = pool.map(_tag_each, [words[0::2], words[1::2]] * 2)
    load_tagger.cache_clear()
    expected = _tag_each(words)
    assert halves[0] == expected[0::2] == halves[2] and halves[1] == expected[1::2] == halves[3]
