"""Properties of the position-embedding resampler, and peers as oracles (scipy zoom = big_vision, timm)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from reclip_eval.models.pos_embed import resample_pos_embed

grids = st.tuples(st.integers(1, 9), st.integers(1, 9))


@settings(max_examples=60, deadline=None)
@given(old=grids, new=grids, prefix=st.integers(0, 2), dim=st.integers(1, 5))
def test_shapes_prefix_and_dtype(old, new, prefix, dim):
    pe = torch.randn(prefix + old[0] * old[1], dim, dtype=torch.float64).to(torch.bfloat16)
    out = resample_pos_embed(pe, old, new, num_prefix=prefix)
    assert out.shape == (prefix + new[0] * new[1], dim)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out[:prefix], pe[:prefix])  # prefix tokens bit-exact


@settings(max_examples=40, deadline=None)
@given(old=grids, new=grids)
def test_constant_grid_stays_constant(old, new):
    pe = torch.full((old[0] * old[1], 3), 0.37)
    out = resample_pos_embed(pe, old, new)
    torch.testing.assert_close(out, torch.full_like(out, 0.37))


@settings(max_examples=40, deadline=None)
@given(old=st.tuples(st.integers(2, 9), st.integers(2, 9)), new=st.tuples(st.integers(2, 16), st.integers(2, 16)),
       a=st.floats(-2, 2), b=st.floats(-2, 2), c=st.floats(-1, 1))
def test_linear_ramp_stays_exact_ramp(old, new, a, b, c):
    """With aligned corners a function linear in (row, col) over [0,1]^2 is reproduced exactly, up and down."""
    def ramp(h, w):
        rows = torch.linspace(0, 1, h, dtype=torch.float64).view(h, 1).expand(h, w)
        cols = torch.linspace(0, 1, w, dtype=torch.float64).view(1, w).expand(h, w)
        return (a * rows + b * cols + c).reshape(h * w, 1).float()

    out = resample_pos_embed(ramp(*old), old, new)
    torch.testing.assert_close(out, ramp(*new), atol=1e-5, rtol=0)


def test_same_size_is_identity_and_batched_form():
    pe = torch.randn(1, 1 + 16, 8)
    assert resample_pos_embed(pe, (4, 4), (4, 4), num_prefix=1) is pe
    out = resample_pos_embed(pe, (4, 4), (14, 14), num_prefix=1)
    assert out.shape == (1, 1 + 196, 8)


def test_non_square_grid_of_equal_count_is_resampled():
    """timm's identity shortcut misses this case (3x4 and 4x3 have the same token count)."""
    pe = torch.arange(12, dtype=torch.float32).view(12, 1)
    out = resample_pos_embed(pe, (3, 4), (4, 3))
    assert not torch.equal(out, pe)


def test_wrong_token_count_is_an_error():
    with pytest.raises(ValueError, match="expected 1 prefix \\+ 4x4 grid = 17"):
        resample_pos_embed(torch.randn(16, 4), (4, 4), (8, 8), num_prefix=1)


def test_matches_big_vision_scipy_zoom_order1():
    """big_vision's resample_posemb is scipy.ndimage.zoom(order=1): our default must give the same numbers."""
    rng = np.random.default_rng(0)
    grid = rng.normal(size=(4, 4, 6)).astype(np.float64)
    zoom = (14 / 4, 14 / 4, 1)
    expected = ndimage.zoom(grid, zoom, order=1)
    out = resample_pos_embed(torch.from_numpy(grid).reshape(16, 6).float(), (4, 4), (14, 14))
    np.testing.assert_allclose(out.reshape(14, 14, 6).numpy(), expected, atol=1e-5)


def test_matches_timm_with_the_same_mode():
    """With timm's conventions (no corner alignment) our function agrees with timm's resampler, prefix included."""
    from timm.layers import resample_abs_pos_embed

    pe = torch.randn(1, 1 + 7 * 7, 16)
    ours = resample_pos_embed(pe, (7, 7), (14, 14), num_prefix=1, mode="bicubic", align_corners=False)
    theirs = resample_abs_pos_embed(pe, new_size=[14, 14], old_size=[7, 7], num_prefix_tokens=1,
                                    interpolation="bicubic", antialias=False)
    torch.testing.assert_close(ours, theirs)


def test_resize_for_a_config_reads_the_grids_and_describes_itself():
    """The one resize decision (loader and set_image_size): grids from the configs, the count checked, described."""
    from reclip_eval.models.config import PosEmbedResampleConfig, VisionConfig
    from reclip_eval.models.pos_embed import resize_pos_embed

    target = VisionConfig(image_size=(32, 48), patch_size=16, width=8, layers=1, heads=2, pool="cls")
    pe = torch.randn(1, 1 + 4, 8)
    resize = resize_pos_embed(pe, (2, 2), target, PosEmbedResampleConfig())
    assert torch.equal(resize.pos_embed, resample_pos_embed(pe, (2, 2), (2, 3), num_prefix=1))
    assert resize.description == "2x2 -> 2x3 (bilinear, align_corners=True, antialias=False)"
    same = resize_pos_embed(resize.pos_embed, (2, 3), target, PosEmbedResampleConfig())
    assert same.pos_embed is resize.pos_embed and same.description is None
    with pytest.raises(ValueError, match="does not fit a 2x2 grid \\(expected 1 prefix \\+ 4 tokens\\)"):
        resize_pos_embed(torch.randn(1, 4, 8), (2, 2), target, PosEmbedResampleConfig())


def test_named_modes_are_the_peers_resamplers():
    """Each named mode gives its peer's numbers: big_vision's scipy zoom, open_clip's big_vision converter (timm,
    bilinear without corner alignment or antialias), open_clip's own resize_pos_embed (bicubic, antialias)."""
    from timm.layers import resample_abs_pos_embed

    from reclip_eval.models.config import RESAMPLE_MODES, PosEmbedResampleConfig

    def ours(name, pe, old, new):
        m = PosEmbedResampleConfig.named(name)
        return resample_pos_embed(pe, old, new, num_prefix=1, mode=m.mode, align_corners=m.align_corners,
                                  antialias=m.antialias)

    pe = torch.randn(1, 1 + 6 * 6, 8, generator=torch.Generator().manual_seed(0))
    grid = pe[0, 1:].double().reshape(6, 6, 8).numpy()
    for new in (4, 9):  # down- and upsampling (antialias only acts when downsampling)
        zoomed = ndimage.zoom(grid, (new / 6, new / 6, 1), order=1)
        np.testing.assert_allclose(ours("big_vision", pe, (6, 6), (new, new))[0, 1:].reshape(new, new, 8).numpy(),
                                   zoomed, atol=1e-5)
        timm = resample_abs_pos_embed(pe, new_size=[new, new], old_size=[6, 6], num_prefix_tokens=1,
                                      interpolation="bilinear", antialias=False)
        torch.testing.assert_close(ours("timm_bilinear", pe, (6, 6), (new, new)), timm)
        open_clip_state = {"visual.positional_embedding": pe[0].clone()}
        visual = type("Visual", (), {"grid_size": (new, new)})()
        from open_clip.model import resize_pos_embed as open_clip_resize

        open_clip_resize(open_clip_state, type("Model", (), {"visual": visual})())
        torch.testing.assert_close(ours("open_clip", pe, (6, 6), (new, new))[0],
                                   open_clip_state["visual.positional_embedding"])
    assert PosEmbedResampleConfig().name == "big_vision"  # the default is big_vision's, recorded by name
    assert all(PosEmbedResampleConfig.named(n).name == n for n in RESAMPLE_MODES)
    assert PosEmbedResampleConfig("bicubic", align_corners=True).name is None
    with pytest.raises(ValueError, match=r"unknown position-embedding resample mode 'scipy'; known: big_vision"):
        PosEmbedResampleConfig.named("scipy")
