"""Whether weights hold only finite values, checked without a second copy of them.

`np.isfinite(a).all()` / `torch.isfinite(t).all()` build a boolean mask as long as the tensor before reducing it: a
quarter of a float32 tensor's size, half of a bfloat16 one's. Checkpoints run to gigabytes, so the mask is built a
chunk at a time here, bounding the extra memory whatever a tensor's size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CHUNK_ELEMENTS = 1 << 22  # 4 MB of mask per step: large enough that the loop costs nothing next to the check


def all_finite(values: Any) -> bool:
    """True when the numpy array or torch tensor `values` holds no NaN and no infinity (integers always do)."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "fc":
            return True
        isfinite = np.isfinite
    else:  # a torch tensor (torch is not imported here: the numpy paths need it not)
        if not (values.is_floating_point() or values.is_complex()):
            return True
        isfinite = type(values).isfinite
    flat = values.reshape(-1)  # a view for the contiguous tensors checkpoints hold
    return all(bool(isfinite(flat[start:start + CHUNK_ELEMENTS]).all())
               for start in range(0, flat.shape[0], CHUNK_ELEMENTS))
