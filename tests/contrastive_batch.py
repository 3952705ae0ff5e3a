"""The fixed tiny model and batch that the contrastive-loss equality tests (DDP, micro-batches) compare on."""

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
