"""Adafactor (the paper's optimizer) for FSDP-sharded parameters.

torch.optim.Adafactor cannot step DTensor parameters: its factored second moment reduces over the sharded dimension
with in-place ops that DTensor refuses (torch 2.14). And running it on each process's shard alone would change the
algorithm (column statistics and the relative step size would see only that shard). So each parameter is stepped
whole, one at a time: gather the parameter and its gradient, let torch's own Adafactor update the whole tensor,
keep this process's shard of the result. Same update as unsharded training, with torch's implementation doing the
arithmetic. Adafactor's state is a row and a column factor per matrix (a vector per 1-d parameter): small enough to
keep whole on every process. The price: one all-gather of each parameter and gradient per step on top of FSDP's
own traffic, and the memory of the largest parameter, once.
"""

from __future__ import annotations

import torch

from reclip_eval.train.parallel import is_sharded


def _keep_shard(param: torch.Tensor, whole: torch.Tensor) -> None:
    from torch.distributed.tensor import distribute_tensor

    # src_data_rank=None: every process cuts its own shard out of its own (identical) whole tensor, no traffic.
    param.copy_(distribute_tensor(whole, param.device_mesh, param.placements, src_data_rank=None))


class ShardedAdafactor(torch.optim.Adafactor):
    """torch.optim.Adafactor's update on whole tensors, for parameters that FSDP sharded (plain ones work too).
    The state dict has torch.optim.Adafactor's layout."""

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        # Steps one whole tensor at a time; its group settings are copied from the outer group on each use (the
        # learning-rate schedule changes them) and its state is the outer optimizer's state of that parameter.
        self._single = torch.optim.Adafactor([torch.zeros(1)], **kwargs)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        single_group = self._single.param_groups[0]
        for group in self.param_groups:
            settings = {key: value for key, value in group.items() if key != "params"}
            # Same order on every process: the gathers below are collectives.
            for param in group["params"]:
                if param.grad is None:
                    continue
                sharded = is_sharded(param)
                whole = param.full_tensor() if sharded else param  # a replicated parameter is stepped in place
                if sharded:
                    whole.grad = param.grad.full_tensor()
                single_group.update(settings, params=[whole])
                self._single.state[whole] = self.state[param]  # filled in place on the first step
                try:
                    self._single.step()
                finally:
                    self._single.state.clear()
                    single_group["params"] = []
                if sharded:
                    _keep_shard(param, whole)
        return loss
