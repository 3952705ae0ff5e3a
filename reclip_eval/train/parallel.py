"""How the model is spread over the processes of a torchrun job during a stage: replicated (DDP) or sharded (FSDP).

    recipe: data_parallel: ddp    every process holds the whole model, gradients are all-reduced (the default)
            data_parallel: fsdp   parameters, gradients and optimizer states are split across the processes
                                  (torch's FSDP2 `fully_shard`), one unit per transformer block plus the rest

Either way the loss and the gradients are those of the global batch (tests/test_fsdp.py). Under FSDP the trainer
keeps an unsharded master copy of the model on the CPU between stages (a new stage may resample the position
embedding, which is a plain-tensor operation), trains a sharded copy of it, and writes the weights back at the end
of the stage.

The temperature `logit_scale` is a 0-d parameter, which FSDP cannot split along a dimension: it stays replicated
(`ignored_params`) and its gradient is averaged here, as DDP would.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from reclip_eval.distributed import rank_and_size
from reclip_eval.errors import ReclipError
from reclip_eval.models.clip import CLIP

DataParallel = Literal["ddp", "fsdp"]


@dataclass
class StageModel:
    net: nn.Module  # run forward/backward through this: the model, its DDP wrapper, or the sharded copy (compiled)
    module: nn.Module  # whose parameters the optimizer steps and resume points save (the model, or the sharded copy)
    sharded: bool

    def average_unsharded_gradients(self) -> None:
        """Under FSDP, all-reduce (mean) the gradients of the parameters FSDP left replicated; call after backward.
        DDP and single-process training have nothing to do here."""
        if not self.sharded:
            return
        world = rank_and_size()[1]
        for param in self.module.parameters():
            if param.grad is not None and not is_sharded(param.grad):
                dist.all_reduce(param.grad)
                param.grad /= world

    def write_back(self, model: CLIP) -> None:
        """Copy the trained weights into `model` (FSDP: gathers the shards on every process: collective)."""
        if self.module is model:
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(self.module, options=StateDictOptions(full_state_dict=True))
        model.load_state_dict({name: tensor.cpu() for name, tensor in full.items()}, strict=True)


def is_sharded(tensor: torch.Tensor) -> bool:
    """A DTensor: a parameter (or gradient) that FSDP split across the processes."""
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def _fully_shard():
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:
        fully_shard = None
    if fully_shard is None or "ignored_params" not in inspect.signature(fully_shard).parameters:
        raise ReclipError(f"data_parallel=fsdp needs torch >= 2.7 (FSDP2's fully_shard with ignored_params); this is "
                          f"torch {torch.__version__}: upgrade torch or use data_parallel=ddp")
    return fully_shard


def prepare_stage_model(model: CLIP, strategy: DataParallel, device: str, *, compile: bool = False) -> StageModel:
    """The model as this process trains it for one stage (its `net` torch.compile'd when `compile`). Call after
    the stage's image size is set."""
    placed = _place(model, strategy, device)
    if compile:
        placed.net = torch.compile(placed.net)
    return placed


def _place(model: CLIP, strategy: DataParallel, device: str) -> StageModel:
    world = rank_and_size()[1]
    if world == 1:
        model.to(device)
        return StageModel(model, model, sharded=False)
    if strategy == "ddp":
        model.to(device)
        return StageModel(nn.parallel.DistributedDataParallel(model), model, sharded=False)
    if strategy != "fsdp":
        raise ValueError(f"data_parallel: expected 'ddp' or 'fsdp', got {strategy!r}")
    fully_shard = _fully_shard()
    from torch.distributed.device_mesh import init_device_mesh

    # Explicit: the default mesh is the accelerator's even when this run asked for the CPU.
    mesh = init_device_mesh(torch.device(device).type, (world,))
    model.cpu()  # the master copy waits on the CPU; the devices hold only shards
    # The copy stays on the CPU too: each fully_shard call moves only its own unit's parameters to the device and
    # shards them there, so the whole model is never on one device.
    sharded = copy.deepcopy(model)
    # One FSDP unit per block: its parameters are gathered just before the block runs and freed after, so at most
    # one block is unsharded at a time; the root unit holds embeddings, norms and projections.
    for tower in (sharded.visual, sharded.text):
        for block in tower.transformer.blocks:
            fully_shard(block, mesh=mesh)
    fully_shard(sharded, mesh=mesh, ignored_params={sharded.logit_scale})
    sharded.logit_scale.data = sharded.logit_scale.data.to(device)  # FSDP leaves ignored parameters where they are
    return StageModel(sharded, sharded, sharded=True)
