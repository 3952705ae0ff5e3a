"""SigLIP 2's NaFlex input (transformers `Siglip2Model`) as one tensor per image, so it travels the one DataLoader
path every model kind shares (transform -> stacked batch -> embed_pixels).

Siglip2ImageProcessor resizes each image keeping its aspect ratio to at most `max_num_patches` patches and returns
its patches flattened (max_num_patches, 3 * patch**2), padded at the end, with a mask of the real ones and the
(rows, cols) of its grid. The mask follows from the grid (the first rows * cols patches are real), so one extra row
carrying (rows, cols) is all a packed tensor adds: (max_num_patches + 1, 3 * patch**2), exact in float32.

An image has no one size here: the results record the side of the square image that fills `max_num_patches`
(`nominal_image_size`), and the processor's settings (max_num_patches, patch_size) beside it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported on use: the kind registers itself without it
    import torch


class NaFlexTransform:
    """PIL image -> packed (max_num_patches + 1, 3 * patch**2) tensor through the model's own image processor
    (picklable for DataLoader workers)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image) -> torch.Tensor:
        out = self.processor(images=image.convert("RGB"), return_tensors="pt")
        return pack(out["pixel_values"][0], out["spatial_shapes"][0])

    def __repr__(self) -> str:
        return f"{type(self.processor).__name__}({self.processor.to_dict()})"


def pack(patches: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(N, D) patches and their grid's (rows, cols) -> (N + 1, D), the grid in the last row's first two entries."""
    import torch

    extra = torch.zeros(1, patches.shape[1], dtype=patches.dtype)
    extra[0, :2] = grid.to(patches.dtype)
    return torch.cat([patches, extra])


def unpack(packed: torch.Tensor) -> dict[str, Any]:
    """A batch of packed tensors (B, N + 1, D) -> Siglip2Model's pixel_values, pixel_attention_mask, spatial_shapes,
    as its processor makes them."""
    import torch

    patches, grids = packed[:, :-1], packed[:, -1, :2].float().round().long()
    positions = torch.arange(patches.shape[1], device=packed.device)
    mask = (positions[None, :] < grids.prod(dim=-1)[:, None]).to(torch.int32)
    return {"pixel_values": patches, "pixel_attention_mask": mask, "spatial_shapes": grids}


def blank_packed(processor, device: Any) -> torch.Tensor:
    """One blank image filling the processor's whole patch budget, packed (for the FLOP count)."""
    import torch

    side = math.isqrt(processor.max_num_patches)
    patches = torch.zeros(side * side, 3 * processor.patch_size ** 2)
    padding = torch.zeros(processor.max_num_patches - side * side, patches.shape[1])
    return pack(torch.cat([patches, padding]), torch.tensor([side, side]))[None].to(device)


def nominal_image_size(processor) -> int:
    """The side of the square image whose patches fill the processor's budget (what the results record)."""
    return processor.patch_size * math.isqrt(processor.max_num_patches)
