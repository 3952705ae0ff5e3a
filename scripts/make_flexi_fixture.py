"""Writes tests/fixtures/flexi/resample_patchemb.npz: a random patch kernel and what big_vision's own FlexiViT
resize (`big_vision.models.proj.flexi.vit.resample_patchemb`, which needs TensorFlow) makes of it, the oracle of
reclip_eval/models/patch_resize.py. Generated with big_vision 0127fb6b337ee2a27bf4e54dea79cff176527356 and
tensorflow 2.21 in a separate environment (TensorFlow is not a dependency of this project):

    PYTHONPATH=BIG_VISION_CHECKOUT /path/to/tf-env/bin/python scripts/make_flexi_fixture.py \
        tests/fixtures/flexi/resample_patchemb.npz
"""

import sys

import numpy as np
from big_vision.models.proj.flexi.vit import resample_patchemb

rng = np.random.default_rng(0)
cases = {}
for name, (old_hw, new_hw) in {"8to16": ((8, 8), (16, 16)), "4to12": ((4, 4), (12, 12)),
                               "8to12x16": ((8, 8), (12, 16))}.items():
    old = rng.standard_normal((*old_hw, 3, 4)).astype(np.float32)  # flax layout (h, w, in, out)
    cases[f"{name}/old"] = old
    cases[f"{name}/new"] = np.asarray(resample_patchemb(old, new_hw), dtype=np.float32)
np.savez(sys.argv[1], **cases)
