"""The CLIP image tower as a detection backbone: ViTDet's plain-ViT recipe (Li et al. 2022, "Exploring Plain
Vision Transformer Backbones for Object Detection"), as RO-ViT (Kim et al. 2023) and F-VLM (Kuo et al. 2023) use it.

- Weights come from our VisionTower unchanged; the position embedding is resampled once from the pretraining grid
  to the detection grid with the same function (and the checkpoint's recorded mode) as the paper's high-res
  finetune stage: `VisionTower.set_image_size` -> `models.pos_embed.resample_pos_embed`. ViTDet interpolates
  at every forward instead; one fixed square canvas makes once enough. A class token, if any, is dropped (ViTDet).
- Most blocks attend within non-overlapping windows (zero-padded to whole windows), a few attend globally
  (ViTDet: window 14 with 4 evenly spaced global blocks). The pretrained blocks need no new parameters for this.
  ViTDet's relative position biases are left out: the CLIP towers were not pretrained with them.
- A simple feature pyramid (ViTDet) turns the single stride-`patch` map into strides 4, 8, 16, 32 with
  deconvolutions / max-pooling, a 1x1 and a 3x3 conv with channel LayerNorm, plus a stride-64 level (max-pool of
  stride 32) for the RPN: torchvision's backbone contract (`out_channels`, an OrderedDict of maps).
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from reclip_eval.detect.config import BackboneConfig
from reclip_eval.models.config import PosEmbedResampleConfig
from reclip_eval.models.transformer import Block
from reclip_eval.models.vision import VisionTower

PYRAMID_STRIDES = (4, 8, 16, 32)
FEATURE_NAMES = ("0", "1", "2", "3")  # + "pool" (stride 64): torchvision's FPN names, as MaskRCNN expects


class LayerNorm2d(nn.Module):
    """LayerNorm over channels at each position of a (B, C, H, W) map (ViTDet's "LN" in convolutional heads)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def default_global_blocks(depth: int) -> list[int]:
    """The last block of each quarter of the depth (ViTDet: 2, 5, 8, 11 of 12; 5, 11, 17, 23 of 24)."""
    return sorted({max(0, round(depth * q / 4) - 1) for q in (1, 2, 3, 4)})


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, D) -> (B * windows, window * window, D), zero-padding H and W to multiples of `window`."""
    batch, height, width, dim = x.shape
    pad_h, pad_w = (-height) % window, (-width) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = height + pad_h, width + pad_w
    x = x.view(batch, hp // window, window, wp // window, window, dim).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, dim), (hp, wp)


def window_unpartition(x: torch.Tensor, window: int, padded_hw: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of window_partition: (B * windows, window * window, D) -> (B, H, W, D)."""
    hp, wp = padded_hw
    batch = x.shape[0] // ((hp // window) * (wp // window))
    x = x.view(batch, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, hp, wp, -1)[:, : hw[0], : hw[1]]


def windowed_block(block: Block, x: torch.Tensor, window: int | None) -> torch.Tensor:
    """One pre-LN block on a (B, H, W, D) token map; attention within windows unless `window` is None."""
    batch, height, width, dim = x.shape
    if window is None:
        return block(x.reshape(batch, height * width, dim)).view(batch, height, width, dim)
    windows, padded = window_partition(block.norm1(x), window)
    x = x + window_unpartition(block.attn(windows), window, padded, (height, width))
    return x + block.mlp(block.norm2(x))


def _rescale_layers(width: int, factor: float) -> tuple[list[nn.Module], int]:
    """Layers taking a (B, width, H, W) map to `factor` x its resolution (a power of two), and their out width."""
    steps = round(math.log2(factor))
    if 2.0**steps != factor:
        raise ValueError(f"the simple feature pyramid needs power-of-two scale factors, got {factor}")
    layers: list[nn.Module] = []
    for i in range(steps):  # upsampling: 2x2 stride-2 deconvolutions halving the width (ViTDet)
        if i:
            layers += [LayerNorm2d(width), nn.GELU()]
        layers.append(nn.ConvTranspose2d(width, width // 2, kernel_size=2, stride=2))
        width //= 2
    layers += [nn.MaxPool2d(kernel_size=2, stride=2) for _ in range(-steps)]
    return layers, width


class SimpleFeaturePyramid(nn.Module):
    def __init__(self, width: int, patch_size: int, channels: int):
        super().__init__()
        self.levels = nn.ModuleList()
        for stride in PYRAMID_STRIDES:
            layers, out_width = _rescale_layers(width, patch_size / stride)
            layers += [nn.Conv2d(out_width, channels, kernel_size=1, bias=False), LayerNorm2d(channels),
                       nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False), LayerNorm2d(channels)]
            self.levels.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = [level(x) for level in self.levels]
        out = OrderedDict(zip(FEATURE_NAMES, maps, strict=True))
        out["pool"] = F.max_pool2d(maps[-1], kernel_size=1, stride=2)  # torchvision's LastLevelMaxPool
        return out


class ViTDetBackbone(nn.Module):
    """(B, 3, S, S) normalised pixels -> OrderedDict of pyramid maps at strides 4, 8, 16, 32, 64."""

    def __init__(self, tower: VisionTower, config: BackboneConfig, resample: PosEmbedResampleConfig):
        super().__init__()
        tower = copy.deepcopy(tower)
        if config.image_size % tower.config.patch_size:
            raise ValueError(f"backbone.image_size {config.image_size} is not a multiple of the tower's patch size "
                             f"{tower.config.patch_size}")
        tower.set_image_size(config.image_size, resample)  # resample_pos_embed, as in the finetune stage
        prefix = tower.config.pos_embed_prefix  # the class token is dropped: ViTDet runs on the patch grid only
        self.image_size = config.image_size
        self.patch_size = tower.config.patch_size
        self.grid_size = tower.config.grid_size
        self.patch_embed = tower.patch_embed
        self.pos_embed = nn.Parameter(tower.pos_embed.detach()[:, prefix:].clone())
        self.norm_pre = tower.norm_pre
        self.blocks = tower.transformer.blocks
        self.norm = tower.norm
        depth = len(self.blocks)
        global_blocks = list(config.global_blocks) or default_global_blocks(depth)
        bad = [i for i in global_blocks if not 0 <= i < depth]
        if bad:
            raise ValueError(f"backbone.global_blocks {bad} out of range for a {depth}-block tower")
        self.window_sizes = [None if i in global_blocks else config.window_size for i in range(depth)]
        self.pyramid = SimpleFeaturePyramid(tower.config.width, self.patch_size, config.pyramid_channels)
        self.out_channels = config.pyramid_channels

    def token_map(self, pixels: torch.Tensor) -> torch.Tensor:
        """The last block's normalised tokens as a (B, width, S/patch, S/patch) map."""
        if pixels.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"backbone expects {self.image_size}x{self.image_size} inputs (the padded canvas), "
                             f"got {tuple(pixels.shape[-2:])}")
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2) + self.pos_embed
        x = self.norm_pre(x)
        batch, grid = x.shape[0], self.grid_size
        x = x.view(batch, grid, grid, -1)
        for block, window in zip(self.blocks, self.window_sizes, strict=True):
            x = windowed_block(block, x, window)
        return self.norm(x).permute(0, 3, 1, 2)

    def forward(self, pixels: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.pyramid(self.token_map(pixels))

    def layer_id(self, name: str) -> int:
        """Depth of a parameter for layer-wise lr decay (ViTDet): embeddings 0, block i -> i + 1, the rest last."""
        if name.startswith(("patch_embed", "pos_embed", "norm_pre")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return len(self.blocks) + 1
