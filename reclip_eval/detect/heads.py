"""Region heads of the open-vocabulary detector, and the frozen VLM's region scores.

- `TextEmbeddingClassifier` (F-VLM, Kuo et al. 2023; RO-ViT, Kim et al. 2023): region features are projected to
  the CLIP embedding space and scored by cosine similarity against the category text embeddings and a learned
  background embedding, divided by a temperature; softmax cross-entropy in training. Box regression is
  class-agnostic (F-VLM), replicated per class only because torchvision's RoIHeads indexes deltas by class.
- `AgnosticMaskPredictor`: one mask per region whatever its class (F-VLM), likewise replicated for torchvision.
- Box head 4conv1fc and mask head 4conv with channel LayerNorm (ViTDet, Li et al. 2022).
- `VLMRegionScorer`: F-VLM's open-vocabulary branch. RoIAlign on the frozen CLIP tower's last (normalised) token
  map, pooled the way the tower pools its image embedding (mean over positions), through its projection, then
  cosine similarity to the text embeddings times CLIP's own learned temperature, softmax over categories.
- `ensemble_scores`: F-VLM's geometric mean, weight alpha on the VLM for base categories, beta for novel ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from reclip_eval.detect.backbone import LayerNorm2d
from reclip_eval.models.vision import VisionTower


def conv_box_head(channels: int, resolution: int, convs: int, fc_dim: int) -> nn.Module:
    """ViTDet's 4conv1fc head: (N, C, 7, 7) -> (N, fc_dim)."""
    layers: list[nn.Module] = []
    for _ in range(convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), LayerNorm2d(channels), nn.ReLU()]
    layers += [nn.Flatten(), nn.Linear(channels * resolution * resolution, fc_dim), nn.ReLU()]
    return nn.Sequential(*layers)


def conv_mask_head(channels: int, convs: int) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), LayerNorm2d(channels), nn.ReLU()]
    return nn.Sequential(*layers)


class TextEmbeddingClassifier(nn.Module):
    """(N, F) region features -> class logits (N, 1 + C) with background at index 0, box deltas (N, 4 * (1 + C))."""

    def __init__(self, in_features: int, embed_dim: int, temperature: float):
        super().__init__()
        self.region_proj = nn.Linear(in_features, embed_dim)
        self.background = nn.Parameter(torch.randn(embed_dim) * embed_dim**-0.5)
        self.box_deltas = nn.Linear(in_features, 4)
        nn.init.normal_(self.box_deltas.weight, std=0.001)
        nn.init.zeros_(self.box_deltas.bias)
        self.temperature = temperature
        # Set per vocabulary (training: base categories; inference: all); not part of the weights.
        self.register_buffer("text_embeddings", torch.zeros(0, embed_dim), persistent=False)

    def region_embeddings(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.region_proj(features.flatten(1)), dim=-1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not len(self.text_embeddings):
            raise RuntimeError("the detector has no vocabulary: call set_vocabulary() first")
        features = features.flatten(1)
        classes = torch.cat([F.normalize(self.background, dim=-1)[None], self.text_embeddings], dim=0)
        logits = self.region_embeddings(features) @ classes.t() / self.temperature
        deltas = self.box_deltas(features)
        return logits, deltas.repeat(1, classes.shape[0])


class AgnosticMaskPredictor(nn.Module):
    """(N, C, 14, 14) -> mask logits (N, num_classes, 28, 28) in training (the same mask for every class),
    (N, 1, 28, 28) at inference."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(in_channels, dim, kernel_size=2, stride=2)
        self.logits = nn.Conv2d(dim, 1, kernel_size=1)
        self.num_classes = 1  # 1 + vocabulary size, set with the vocabulary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(F.relu(self.upsample(x)))
        # torchvision's mask loss picks each region's mask by its label: a view with one channel per class.
        # At inference (N, 1, 28, 28) is returned as it is: N x 1204 LVIS masks would not fit in memory.
        return logits.expand(-1, self.num_classes, -1, -1) if self.training else logits


class VLMRegionScorer(nn.Module):
    """Frozen CLIP region classification: (token map, boxes) -> (N, C) probabilities over the vocabulary."""

    def __init__(self, tower: VisionTower, logit_scale: float, output_size: int = 7):
        super().__init__()
        self.tower = tower.eval().requires_grad_(False)
        self.logit_scale = logit_scale
        self.output_size = output_size
        self.register_buffer("text_embeddings", torch.zeros(0, tower.proj.out_features), persistent=False)

    def train(self, mode: bool = True) -> VLMRegionScorer:
        super().train(mode)
        self.tower.eval()  # frozen: never in training mode
        return self

    @torch.no_grad()
    def token_map(self, pixels: torch.Tensor) -> torch.Tensor:
        """The frozen tower's last normalised tokens as (B, width, H/patch, W/patch), global attention as trained."""
        tower = self.tower
        prefix = tower.config.num_prefix_tokens
        batch, (grid_h, grid_w), width = pixels.shape[0], tower.config.grid_hw, tower.config.width
        x = tower.norm(tower.transformer(tower.embed(pixels)))[:, prefix:]
        return x.transpose(1, 2).reshape(batch, width, grid_h, grid_w)

    @torch.no_grad()
    def forward(self, token_map: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        scale = 1.0 / self.tower.config.patch_size
        pooled = roi_align(token_map, [b.to(token_map.dtype) for b in boxes], self.output_size,
                           spatial_scale=scale, sampling_ratio=2, aligned=True)
        embeddings = F.normalize(self.tower.proj(pooled.mean(dim=(2, 3))), dim=-1)
        return F.softmax(self.logit_scale * embeddings @ self.text_embeddings.t(), dim=-1)


def ensemble_scores(detector: torch.Tensor, vlm: torch.Tensor, novel: torch.Tensor, alpha: float,
                    beta: float) -> torch.Tensor:
    """F-VLM's geometric mean, (N, C) each: det^(1 - a) * vlm^a with a = beta where `novel` (C,) else alpha."""
    weight = torch.where(novel, torch.tensor(beta, device=vlm.device), torch.tensor(alpha, device=vlm.device))
    return detector.clamp_min(0).pow(1 - weight) * vlm.clamp_min(0).pow(weight)
