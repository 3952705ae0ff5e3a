"""Training curves for TensorBoard (`tensorboard --logdir runs/NAME/tensorboard`): loss, learning rate,
temperature, throughput, per global step across stages. Only the first process writes."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


class MetricsLog:
    def __init__(self, out_dir: Path, enabled: bool, purge_step: int | None = None):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is an optional extra
            log.warning("tensorboard is not installed (pip install 'reclip-eval[train]'): no training curves")
            return
        # purge_step drops events a killed run wrote after its last resume point.
        self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
