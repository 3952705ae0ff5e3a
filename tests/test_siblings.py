"""RECLIP's siblings as recipes and named models (training/{clipa-*,flip-l16,slip-b16,clip-da-b16}.yaml, zoo/):
each loads, `flops` counts what its stages compute after token reduction (SLIP's branch included), and each entry's
card carries its reported numbers with their source."""

import pytest

from reclip_eval.compute import recipe_rows
from reclip_eval.data.augment import PRESETS
from reclip_eval.models.text_reduction import TextTokens
from reclip_eval.models.token_reduction import ImageTokens
from reclip_eval.train.recipe import load_recipe

SIBLINGS = ["clipa-l16-i17-t16", "clipa-v2-h14", "flip-l16", "slip-b16", "clip-da-b16"]


def _rows(name):
    return {row["stage"]: row for row in recipe_rows(name)}


def test_clipa_v2_reduces_both_towers_and_resizes_its_text_positions():
    recipe = load_recipe("clipa-v2-h14")
    low, hires, hires336 = recipe.stages
    assert recipe.text_positions == "resize" and low.text_tokens == TextTokens("syntax")
    assert (low.text_length, hires.text_length, hires.text_tokens) == (8, 32, TextTokens("truncate"))
    assert hires.image_tokens == ImageTokens("random", ratio=0.3) and hires336.image_tokens.ratio == 0.4
    assert low.augment == PRESETS["clipa"] and hires336.augment == PRESETS["clipa"]  # stages inherit it
    rows = _rows("clipa-v2-h14")
    # 84 px / patch 14 = 6x6 patches + the class token; 224 px: 256 patches, 70% kept (179) + the class token.
    assert rows["lowres"]["image_tokens_kept"] == 37 and rows["hires"]["image_tokens_kept"] == 180
    assert rows["lowres"]["text_tokens"] == "syntax" and rows["hires"]["text_length"] == 32
    assert rows["lowres"]["gmacs"] < rows["hires"]["gmacs"] < rows["hires336"]["gmacs"]


def test_flip_masks_half_then_tunes_unmasked():
    rows = _rows("flip-l16")
    assert rows["masked"]["image_tokens_kept"] == 98 and rows["unmasked"]["image_tokens_kept"] == 196
    assert rows["masked"]["image_gmacs"] < 0.55 * rows["unmasked"]["image_gmacs"]


def test_slip_counts_its_two_views():
    slip, clip = _rows("slip-b16")["main"], _rows("clip-da-b16")["main"]  # the same ViT-B/16 at 224 px
    assert slip["slip_gmacs"] > 2 * clip["image_gmacs"]  # two views through the image tower, plus the head
    assert slip["gmacs"] == pytest.approx(clip["gmacs"] + slip["slip_gmacs"])


@pytest.mark.parametrize("name", SIBLINGS)
def test_each_sibling_has_an_entry_whose_card_names_its_source(name):
    from reclip_eval.cards.render import render_card
    from reclip_eval.zoo.entries import load_entry

    entry = load_entry(name)
    assert entry.recipe == name and entry.checkpoint is None
    card = render_card(model_name=name, config=entry.config(), entry=entry)
    numbers = entry.paper_numbers()
    if numbers:
        assert numbers[0].source in card and numbers[0].url in card
        assert all(f"| {k} | {v} |" in card for p in numbers for k, v in p.values.items())
    else:
        assert name == "clip-da-b16"  # "Scaling (Down) CLIP" gives no number we transcribed
