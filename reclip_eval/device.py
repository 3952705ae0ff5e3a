"""Device and precision choices shared by evaluation and training."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from reclip_eval.errors import ReclipError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16")  # fp32, or bf16 autocast
# CPU flags (Linux /proc/cpuinfo) of native bf16 arithmetic: AVX512-BF16 or AMX on x86, the BF16 extension on Arm.
# Without one, torch emulates bf16 on the CPU, slower than fp32: an opt-in speedup that slows the run down.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
CPUINFO = Path("/proc/cpuinfo")


class PrecisionError(ReclipError):
    """A precision the device cannot run as asked (bf16 on a CPU without native bf16 arithmetic)."""


def cpu_bf16_flags(cpuinfo: Path = CPUINFO) -> list[str] | None:
    """The native-bf16 flags this CPU lists; None where the CPU's flags cannot be read (not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):  # x86, Arm
            flags.update(value.split())
    return [flag for flag in CPU_BF16_FLAGS if flag in flags]


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; anything else is passed through."""
    import torch  # on use: the listings and `import reclip_eval` import no torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_precision(precision: str, device: str, cpuinfo: Path = CPUINFO) -> str:
    """'auto' -> bf16 autocast on a GPU, fp32 on the CPU (bf16 there is approximate: opt-in, recorded in the
    results as the precision). bf16 asked for on a CPU without native bf16 arithmetic is refused in one line."""
    import torch

    if precision == "auto":
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, {' or '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and torch.device(device).type == "cpu" and cpu_bf16_flags(cpuinfo) == []:
        raise PrecisionError(f"precision bf16 on the CPU: this CPU lists none of {', '.join(CPU_BF16_FLAGS)} in "
                             f"{cpuinfo}, so torch would emulate bf16, slower than fp32; use fp32 (--precision fp32)")
    return precision


def autocast(device: str | torch.device, precision: str) -> torch.autocast:
    """The one autocast of the project (evaluation, training, the detector): bf16 autocast on the device's type,
    a disabled one for fp32, so callers need no branch."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")
