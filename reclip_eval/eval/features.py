"""Batched feature extraction with progress bars, optional bf16 autocast, and corrupt images counted."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from reclip_eval.data.images import ImageListDataset, collate_skipping
from reclip_eval.zoo.adapter import ModelAdapter


def autocast(device: str, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")


@dataclass
class ImageFeatures:
    features: torch.Tensor  # (N_ok, D) float32, L2-normalised
    targets: list[Any]
    indices: list[int]  # dataset indices of the rows of `features`
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (dataset index, reason)


def encode_image_dataset(
    adapter: ModelAdapter,
    dataset: ImageListDataset,
    *,
    batch_size: int,
    workers: int,
    device: str,
    precision: str,
    desc: str = "images",
) -> ImageFeatures:
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_skipping,
                        pin_memory=torch.device(device).type == "cuda")
    chunks, targets, indices, skipped = [], [], [], []
    with tqdm(total=len(dataset), desc=desc, unit="img", leave=False) as bar:
        for pixels, batch_targets, batch_indices, batch_skipped in loader:
            skipped.extend(batch_skipped)
            if batch_indices:
                with autocast(device, precision):
                    chunks.append(adapter.encode_image(pixels.to(device, non_blocking=True)).float().cpu())
                targets.extend(batch_targets)
                indices.extend(batch_indices)
            bar.update(len(batch_indices) + len(batch_skipped))
    dim = chunks[0].shape[1] if chunks else 0
    features = torch.cat(chunks) if chunks else torch.empty(0, dim)
    return ImageFeatures(features, targets, indices, skipped)


def encode_texts(
    adapter: ModelAdapter, texts: list[str], *, batch_size: int, device: str, precision: str, desc: str = "texts"
) -> torch.Tensor:
    """(N_texts, D) float32, L2-normalised."""
    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, leave=False, disable=len(texts) <= batch_size):
        tokens = adapter.tokenize(texts[start:start + batch_size])
        with autocast(device, precision):
            chunks.append(adapter.encode_text(tokens.to(device)).float().cpu())
    return torch.cat(chunks)
