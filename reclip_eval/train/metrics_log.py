"""Training curves: TensorBoard (`tensorboard --logdir runs/NAME/tensorboard`) and, when asked for and installed,
Weights & Biases. Loss, learning rate, temperature, throughput, per global step across stages. Only the first
process writes."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_run_id"  # beside the checkpoint, so that --resume continues the same W&B run


class MetricsLog:
    def __init__(self, out_dir: Path, tensorboard: bool, purge_step: int | None = None, *,
                 wandb_project: str | None = None, config: dict[str, Any] | None = None):
        self.writer = None
        self.wandb_run = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                log.warning("tensorboard is not installed (pip install 'reclip-eval[train]'): no TensorBoard curves")
            else:
                # purge_step drops events a killed run wrote after its last resume point.
                self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=purge_step)
        if wandb_project:
            self.wandb_run = _start_wandb(Path(out_dir), wandb_project, config or {})

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)
        if self.wandb_run is not None:
            # A resumed run replays the steps after its last resume point; W&B ignores steps it already has, and
            # since resuming is exact those values are the ones it holds.
            self.wandb_run.log(values, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def _start_wandb(out_dir: Path, project: str, config: dict[str, Any]):
    try:
        import wandb
    except ImportError:
        from reclip_eval.errors import ConfigError

        raise ConfigError(f"--wandb {project}", ["the wandb package is not installed (pip install wandb)"]) from None
    id_file = out_dir / WANDB_ID_FILE
    run_id = id_file.read_text(encoding="utf-8").strip() if id_file.is_file() else secrets.token_hex(4)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The API key is wandb's own business (WANDB_API_KEY / its netrc): never read, printed or stored here.
    run = wandb.init(project=project, id=run_id, resume="allow", dir=str(out_dir), name=out_dir.name,
                     config=config)
    from reclip_eval.atomic import write_text_atomic

    write_text_atomic(id_file, run_id + "\n")
    return run
