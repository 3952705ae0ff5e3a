"""A trained detector behind the evaluation suite's ModelAdapter interface, so that
`reclip-eval --model DETECTOR_DIR --task lvis` runs through the same task runner and results schema as the CLIP
tasks. The encoders are the detector's frozen CLIP (its open-vocabulary branch); `image_gmacs` counts the whole
detector on one canvas, and `detect` runs it at the adapter's placement (detect/predict.py).

Also the `reclip_detector` model kind, registered from here so that the zoo's resolver needs no knowledge of
detectors: importing reclip_eval.detect (as reclip_eval/kinds.py does for the CLI) makes detector folders loadable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from reclip_eval.checkpoint import CONFIG_NAME, WEIGHTS_NAME
from reclip_eval.config import to_dict
from reclip_eval.detect.checkpoint import ARCHITECTURE, CLIP_DIR, LoadedDetector, load_detector
from reclip_eval.errors import CheckpointError
from reclip_eval.zoo.model_kinds import LoadRequest, ModelFolder, register_model_kind
from reclip_eval.zoo.torch_adapter import TorchAdapter
from reclip_eval.zoo.training_record import training_compute

if TYPE_CHECKING:  # torch is imported on use: the kind registers itself (listings) without it
    import torch


class DetectorAdapter(TorchAdapter):
    def __init__(self, loaded: LoadedDetector, model_id: str):
        from reclip_eval.data.transforms import image_transform
        from reclip_eval.models.tokenizer import ClipTokenizer

        self.loaded = loaded
        self.model_id = model_id
        self.image_size = loaded.config.backbone.image_size
        self.tokenizer = ClipTokenizer(loaded.clip.config.text.context_length)
        self.transform = image_transform(self.image_size, loaded.clip.config.preprocess)

    @classmethod
    def from_dir(cls, directory: str | Path, model_id: str) -> DetectorAdapter:
        return cls(load_detector(directory), model_id)

    def placed_modules(self) -> list[torch.nn.Module]:
        return [self.loaded.detector, self.loaded.clip]

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """The frozen CLIP embedding of whole images at the detector's canvas size."""
        import torch.nn.functional as F

        vlm = self.loaded.detector.roi_heads.vlm
        tower = vlm.tower if vlm is not None else self.loaded.clip.visual
        size = tower.config.image_size
        if pixels.shape[-1] != size:
            pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True)
        return F.normalize(tower(pixels), dim=-1)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.loaded.clip.encode_text(tokens, normalize=True)

    def detect(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """The detector's outputs (boxes, scores, labels, masks; on the device) for CPU images of any sizes."""
        images = [image.to(self.device) for image in images]
        with self.running():
            return self.loaded.detector(images)

    def image_gmacs(self) -> float:
        """GMACs (FLOPs / 2) of detecting on one canvas: backbone, RPN, heads, frozen tower (matmuls and convs;
        RoIAlign, NMS and mask pasting are not counted)."""
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        detector = self.loaded.detector.eval()
        pixels = torch.rand(3, self.image_size, self.image_size, device=self.device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            detector([pixels])
        return round(counter.get_total_flops() / 2e9, 6)

    def describe(self) -> dict[str, Any]:
        loaded = self.loaded
        clip_config = loaded.clip.config
        preprocess = clip_config.preprocess
        return {
            "id": self.model_id,
            "family": "reclip-detector",
            "compute": training_compute(loaded.path),
            "weights": {"sha256": loaded.sha256, "path": str(loaded.path) if loaded.path else None,
                        "clip_sha256": loaded.clip_sha256},
            "image_size": self.image_size,
            "preprocess": {"image_size": self.image_size, "resize": "longer side to image_size, pad to a square",
                           "interpolation": "bilinear", "antialias": False, "mean": list(preprocess.mean),
                           "std": list(preprocess.std)},
            "tokenizer": {"name": clip_config.text.tokenizer, "context_length": clip_config.text.context_length},
            "pos_embed_resample": to_dict(clip_config.pos_embed_resample),
            "detector": to_dict(loaded.config),
            "base_vocabulary_size": len(loaded.base_vocabulary),
            "source": (loaded.extra or {}).get("source"),
        }


def _is_detector_folder(folder: ModelFolder) -> bool:
    return folder.config_says("architecture", ARCHITECTURE)


# Hub repos of detectors are fetched with the other kinds' files only (clip/ is not among them), as before.
@register_model_kind("reclip_detector", priority=30, recognise=_is_detector_folder,
                     layout=f"{CONFIG_NAME} with architecture {ARCHITECTURE!r}, {WEIGHTS_NAME}, {CLIP_DIR}/ "
                            "(detection tasks)")
def load_detector_folder(folder: Path, request: LoadRequest) -> DetectorAdapter:
    if request.image_size:
        raise CheckpointError(f"{request.model_id}: a detector runs at its trained canvas size; drop --image-size")
    return DetectorAdapter.from_dir(folder, request.model_id)
