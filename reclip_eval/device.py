"""Device and precision choices shared by evaluation and training."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16")  # fp32, or bf16 autocast


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; anything else is passed through."""
    import torch  # on use: the listings and `import reclip_eval` import no torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_precision(precision: str, device: str) -> str:
    """'auto' -> bf16 autocast on a GPU, fp32 on the CPU (where bf16 matmuls are slow and inexact)."""
    import torch

    if precision == "auto":
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, {' or '.join(PRECISIONS)}, got {precision!r}")
    return precision


def autocast(device: str | torch.device, precision: str) -> torch.autocast:
    """The one autocast of the project (evaluation, training, the detector): bf16 autocast on the device's type,
    a disabled one for fp32, so callers need no branch."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")
