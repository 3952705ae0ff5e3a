"""The fixed tiny model and batch that the contrastive-loss equality tests (DDP, micro-batches) compare on."""

import contextlib

import torch

from reclip_eval.models import CLIP, build_config

BATCH = 8


def tiny_batch():
    generator = torch.Generator().manual_seed(123)
    pixels = torch.randn(BATCH, 3, 32, 32, generator=generator)
    tokens = torch.randint(1, 49000, (BATCH, 16), generator=generator)
    tokens[:, 0], tokens[:, 10] = 49406, 49407
    tokens[:, 11:] = 0
    return pixels, tokens


def tiny_model():
    torch.manual_seed(0)
    return CLIP(build_config("tiny"))


def full_batch_reference():
    """(model, loss) of one process on the whole batch, after backward: what the multi-process runs must equal."""
    from reclip_eval.train.loss import contrastive_loss

    model = tiny_model()
    image, text, scale = model(*tiny_batch())
    loss = contrastive_loss(image, text, scale)
    loss.backward()
    return model, loss.detach()


def mean_over_processes(value: torch.Tensor) -> torch.Tensor:
    """The mean of `value` over the processes (a copy): the global-batch loss from the per-process ones."""
    import torch.distributed as dist

    mean = value.detach().clone()
    dist.all_reduce(mean)
    return mean / dist.get_world_size()


def local_part(rank: int, world: int) -> slice:
    """This process's rows of the global batch."""
    return slice(rank * BATCH // world, (rank + 1) * BATCH // world)


def run_processes(worker, tmp_path, *args, world: int = 2) -> dict:
    """Run `worker(rank, world, init_file, out_file, *args)` on `world` CPU processes; return what it saved to
    out_file. The worker calls `join_group(rank, world, init_file)` and saves from one rank."""
    import os

    import torch.multiprocessing as mp

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(worker, args=(world, str(tmp_path / "init"), str(tmp_path / "out.pt"), *args), nprocs=world,
             join=True)
    return torch.load(tmp_path / "out.pt")


@contextlib.contextmanager
def join_group(rank: int, world: int, init_file: str):
    """A gloo process group for the body, torn down after it."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()
