"""torch.distributed plumbing shared by evaluation and training (both run under torchrun), and how their data
loader workers start.

Evaluation: each process encodes a contiguous shard of the images (and texts); the shards are gathered in order,
so every metric is computed on exactly the single-process inputs.

    torchrun --nproc_per_node=8 -m reclip_eval --model M --task imagenet
    torchrun --nproc_per_node=8 -m reclip_eval train reclip-64 --out runs/reclip-64
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def init_from_env(device: str) -> str:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns this process's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    cuda = torch.device(device).type == "cuda"
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    # Leave the group before the interpreter tears down: a gloo group still alive at exit can abort a process that
    # finished its work ("terminate called without an active exception", seen under torchrun on 2 CPU processes).
    atexit.register(_leave_group)
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return device


def _leave_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return rank_and_size()[0] == 0


def barrier() -> None:
    if rank_and_size()[1] > 1:
        dist.barrier()


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous, near-equal blocks: concatenating the blocks of ranks 0..world-1 gives 0..n-1 in order."""
    per, extra = divmod(n, world)
    start = rank * per + min(rank, extra)
    return start, start + per + (1 if rank < extra else 0)


def map_sharded(items: Sequence[T], fn: Callable[[Sequence[T], int], Any]) -> list[Any]:
    """Run `fn(my_items, offset)` on this process's shard; return every process's result, in rank order."""
    rank, world = rank_and_size()
    start, stop = shard_bounds(len(items), rank, world)
    mine = fn(items[start:stop], start)
    if world == 1:
        return [mine]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, mine)
    return gathered


def gather_ints(values: list[int], device: str | torch.device) -> list[list[int]]:
    """Every process's equally long `values`, in rank order (a tensor collective on `device`: nccl needs CUDA)."""
    rank, world = rank_and_size()
    if world == 1:
        return [list(values)]
    mine = torch.tensor(values, dtype=torch.int64, device=device)
    gathered = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine)
    return [t.tolist() for t in gathered]


# What a data loader worker imports to unpickle its dataset: imported once in the fork server, not per worker.
WORKER_PRELOAD = ["torch", "torchvision", "webdataset", "PIL.Image", "reclip_eval.data.shards",
                  "reclip_eval.data.images", "reclip_eval.data.transforms", "reclip_eval.models.tokenizer"]


def worker_context() -> Any:
    """How DataLoader workers start: forked from this process (torch's default on Linux, the fastest), or, once jax
    is imported, forked from a fork server: jax runs threads, a fork of a threaded process can deadlock (jax warns
    at every fork), and the fork server is a fresh process without them. Its preload keeps a worker's start at about
    a second, where spawning each worker costs its imports (measured: ~+9 s per stream of two workers vs ~+2 s)."""
    import sys

    if "jax" not in sys.modules:
        return None
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_PRELOAD)  # read when the server starts; later calls change nothing
    return context
