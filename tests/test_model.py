import dataclasses

import pytest
import torch

from reclip_eval.models import CLIP, PRESETS, build_config
from reclip_eval.models.config import PosEmbedResampleConfig, PreprocessConfig, TextConfig, VisionConfig
from reclip_eval.models.tokenizer import ClipTokenizer


def test_forward_shapes_and_normalisation():
    model = CLIP(build_config("tiny")).eval()
    tokens = ClipTokenizer(16)(["a red circle", "a blue square in the top left"])
    img, txt, scale = model(torch.randn(2, 3, 32, 32), tokens)
    assert img.shape == txt.shape == (2, 32)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(scale, torch.tensor(1 / 0.07), rtol=1e-5, atol=0)


def test_tokenizer_truncation_keeps_end_token():
    tok = ClipTokenizer(8)
    long = tok(["one two three four five six seven eight nine ten"])
    short = tok(["red"])
    assert long.shape == (1, 8) and long[0, 0] == tok.start_token_id and long[0, -1] == tok.end_token_id
    assert short[0, 2] == tok.end_token_id and short[0, 3:].eq(0).all()
    assert tok.decode(short[0]) == "red"


def test_eot_pooling_is_causal_and_ignores_padding():
    """Text features are read at the end token; tokens after it (padding) cannot change them."""
    model = CLIP(build_config("tiny")).eval()
    tokens = ClipTokenizer(16)(["a green star"])
    junk = tokens.clone()
    end = int(tokens.argmax())
    junk[0, end + 1:] = 1234  # garbage after the end token (ids below the end id, so argmax is unchanged)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(tokens), model.encode_text(junk))


def test_mean_pooling_masks_padding():
    config = build_config("tiny", {"text": {"pool": "mean"}})
    model = CLIP(config).eval()
    tok = ClipTokenizer(16)
    a = tok(["a green star"])
    b = ClipTokenizer(12)(["a green star"])  # same text, less padding
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(a), model.encode_text(b), atol=1e-5, rtol=1e-5)


def test_cls_pooling_option_adds_a_prefix_token():
    config = build_config("tiny", {"vision": {"pool": "cls"}})
    model = CLIP(config)
    assert model.visual.pos_embed.shape[1] == 1 + 16
    assert model.encode_image(torch.randn(1, 3, 32, 32)).shape == (1, 32)


def test_set_image_size_resamples_and_rejects_wrong_input():
    model = CLIP(build_config("tiny"))
    before = model.visual.pos_embed.detach().clone()
    model.set_image_size(64)
    assert model.config.vision.image_size == 64 and model.visual.pos_embed.shape == (1, 64, 32)
    # Corners of the grid are kept exactly by the aligned-corner resampler.
    after = model.visual.pos_embed.detach().view(8, 8, 32)
    torch.testing.assert_close(after[0, 0], before.view(4, 4, 32)[0, 0])
    with pytest.raises(ValueError, match="expects 64x64 pixels"):
        model.encode_image(torch.randn(1, 3, 32, 32))


def test_paper_architecture_preset():
    """ViT-L/16 image tower (24 layers, 16 heads, width 1024) and a 12-layer width-1024 text tower (Sec. 3.2)."""
    config = PRESETS["vit-l16-text12x1024"]
    assert (config.vision.patch_size, config.vision.width, config.vision.layers, config.vision.heads) == (16, 1024, 24, 16)
    assert (config.text.width, config.text.layers) == (1024, 12)
    assert config.vision.pool == "gap"
    with torch.device("meta"):
        model = CLIP(config)
    vision_params = sum(p.numel() for p in model.visual.parameters())
    assert 300e6 < vision_params < 306e6  # the paper's Table 3 lists 303M for the ViT-L image encoder


def test_invalid_sizes_rejected():
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        dataclasses.replace(VisionConfig(), image_size=100)


def test_image_size_may_be_height_and_width():
    config = VisionConfig(image_size=(32, 48), patch_size=16, width=32, layers=1, heads=2)
    assert config.image_hw == (32, 48) and config.grid_hw == (2, 3) and config.num_patches == 6
    assert VisionConfig(image_size=[64, 64]).image_size == 64  # square is always the int
    with pytest.raises(ValueError, match="not square"):
        _ = config.grid_size
    with pytest.raises(ValueError, match=r"image_size \[32, 40\]: width 40 is not a multiple of patch_size 16"):
        dataclasses.replace(config, image_size=(32, 40))
    with pytest.raises(ValueError, match="integer or a \\[height, width\\] pair"):
        dataclasses.replace(config, image_size=(32, 48, 64))


def test_set_image_size_to_height_and_width():
    model = CLIP(build_config("tiny")).eval()
    model.set_image_size((32, 48))
    assert model.config.vision.image_size == (32, 48) and model.visual.pos_embed.shape == (1, 4 * 6, 32)
    assert model.encode_image(torch.randn(1, 3, 32, 48)).shape == (1, 32)
    with pytest.raises(ValueError, match="expects 32x48 pixels"):
        model.encode_image(torch.randn(1, 3, 48, 32))
    before = model.visual.pos_embed
    model.set_image_size((32, 48))
    assert model.visual.pos_embed is before  # the same size keeps the Parameter (and the optimizer's state)


@pytest.mark.parametrize("build, message", [
    (lambda: VisionConfig(activation="relu"), "vision activation 'relu' must be one of gelu, gelu_tanh"),
    (lambda: VisionConfig(pos_embed="rope"), "vision pos_embed 'rope' must be one of learned, sincos2d"),
    (lambda: TextConfig(pool="cls"), "text pool 'cls' must be one of eot, mean, last"),
    (lambda: PreprocessConfig(interpolation="nearest"), "preprocess interpolation 'nearest' must be one of"),
    (lambda: PosEmbedResampleConfig(mode="area"), "pos_embed_resample mode 'area' must be one of bilinear"),
])
def test_a_config_built_directly_checks_its_choices(build, message):
    """Before: a bad activation built the config and failed later as a KeyError in the transformer block."""
    with pytest.raises(ValueError, match=message):
        build()
