"""Adapter for open_clip models: `--model openclip:ARCH --checkpoint weights.safetensors` (any open_clip
architecture), or an open_clip checkpoint folder / Hub repo (`open_clip_config.json` + safetensors weights).

Weights are read from safetensors only; open_clip's own loader would also accept pickles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reclip_eval.checkpoint import file_sha256, read_weights
from reclip_eval.errors import CheckpointError
from reclip_eval.zoo.adapter import ModelAdapter

OPENCLIP_CONFIG = "open_clip_config.json"
OPENCLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "model.safetensors")


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Checkpoints saved from DDP training carry a "module." prefix.
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


class OpenClipAdapter(ModelAdapter):
    def __init__(self, model, preprocess, tokenizer, model_id: str, arch: str, weights: Path | None,
                 source: dict[str, Any] | None = None):
        self.model = model.eval()
        self.transform = preprocess
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.arch = arch
        self.weights = weights
        self.sha256 = file_sha256(weights) if weights else None
        self.source = source or {}
        size = getattr(model.visual, "image_size", 224)
        self.image_size = size[0] if isinstance(size, (tuple, list)) else int(size)

    @classmethod
    def from_arch(cls, arch: str, weights: str | None, model_id: str) -> OpenClipAdapter:
        import open_clip

        if arch not in open_clip.list_models():
            from reclip_eval.registry import unknown_name

            raise unknown_name("open_clip architecture", arch, open_clip.list_models())
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
        path = None
        if weights:
            path = Path(weights).expanduser()
            state = _strip_prefix(read_weights(path))
            missing, unexpected = _diff_keys(model.state_dict(), state)
            if missing or unexpected:
                raise CheckpointError(f"{path}: does not match open_clip {arch}: missing {missing[:5]}, "
                                      f"unexpected {unexpected[:5]}")
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise CheckpointError(f"{path}: does not match open_clip {arch}: {e}") from None
        return cls(model, preprocess, open_clip.get_tokenizer(arch), model_id, arch, path)

    @classmethod
    def from_dir(cls, folder: Path, model_id: str, source: dict[str, Any] | None = None) -> OpenClipAdapter:
        import open_clip

        weights = next((folder / name for name in OPENCLIP_WEIGHTS if (folder / name).is_file()), None)
        if weights is None:
            raise CheckpointError(f"{folder}: no safetensors weights ({', '.join(OPENCLIP_WEIGHTS)}); pickled "
                                  "weights are never loaded")
        spec = f"local-dir:{folder}"
        model, _, preprocess = open_clip.create_model_and_transforms(spec)
        return cls(model, preprocess, open_clip.get_tokenizer(spec), model_id, spec, weights, source)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels.to(self._device()), normalize=True)

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens.to(self._device()), normalize=True)

    def to(self, device: str | torch.device) -> OpenClipAdapter:
        self.model.to(device)
        return self

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "family": "open_clip",
            "architecture": self.arch,
            "weights": {"sha256": self.sha256, "path": str(self.weights) if self.weights else None, **self.source},
            "image_size": self.image_size,
            "preprocess": {"transform": repr(self.transform)},
            "tokenizer": {"name": type(self.tokenizer).__name__,
                          "context_length": getattr(self.tokenizer, "context_length", None)},
        }


def _diff_keys(expected: dict, state: dict) -> tuple[list[str], list[str]]:
    return sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
