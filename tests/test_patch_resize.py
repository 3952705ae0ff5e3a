"""FlexiViT's pseudo-inverse patch-kernel resize (models/patch_resize.py) equals big_vision's own
`resample_patchemb` (fixture written by scripts/make_flexi_fixture.py with big_vision's code) and keeps a patch's
embedding when the patch is upsampled."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reclip_eval.models.patch_resize import resample_patch_kernel

FIXTURE = Path(__file__).parent / "fixtures" / "flexi" / "resample_patchemb.npz"


@pytest.mark.parametrize("case", ["8to16", "4to12", "8to12x16"])
def test_equals_big_vision_resample_patchemb(case):
    with np.load(FIXTURE, allow_pickle=False) as data:
        old, expected = data[f"{case}/old"], data[f"{case}/new"]
    # flax (h, w, in, out) <-> torch Conv2d (out, in, h, w)
    ours = resample_patch_kernel(torch.from_numpy(old).permute(3, 2, 0, 1), expected.shape[:2])
    np.testing.assert_allclose(ours.permute(2, 3, 1, 0).numpy(), expected, atol=1e-5)


def test_an_upsampled_patch_embeds_as_the_original():
    kernel = torch.randn(6, 3, 8, 8)
    patches = torch.rand(4, 3, 8, 8)
    bigger = F.interpolate(patches, size=(16, 16), mode="bilinear", align_corners=False)
    resized = resample_patch_kernel(kernel, (16, 16))
    torch.testing.assert_close(F.conv2d(bigger, resized, stride=16), F.conv2d(patches, kernel, stride=8),
                               atol=1e-4, rtol=1e-4)


def test_same_size_and_bad_shapes():
    kernel = torch.randn(2, 3, 8, 8)
    assert resample_patch_kernel(kernel, (8, 8)) is kernel
    with pytest.raises(ValueError, match="patch kernel"):
        resample_patch_kernel(torch.randn(3, 8, 8), (16, 16))
