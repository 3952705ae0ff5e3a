"""Our checkpoints evaluated with the flax model (`--backend jax`): the weights are loaded and checked by the one
checkpoint loader (reclip_eval.checkpoint, through the torch adapter: safetensors only, position embedding resampled
there), converted exactly to flax parameters (reclip_eval.flax_models.convert), and the encoders run under `jit`.

The evaluation code is the same for both backends: it sees a ModelAdapter, whose preprocessing (the same torchvision
transform, whose tensors `np.asarray` reads) and tokenizer are the torch family's. Only the two encoders differ.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from reclip_eval.errors import CheckpointError
from reclip_eval.flax_models.compile_cache import JaxUnavailableError, import_jax
from reclip_eval.zoo.adapter import ModelAdapter
from reclip_eval.zoo.reclip import ReclipAdapter

BACKEND = "jax"
TEXT_LENGTH_STEP = 8


def flax_adapter_for(adapter: ModelAdapter) -> FlaxReclipAdapter:
    """The flax twin of a loaded adapter; only our own architecture has one."""
    if not isinstance(adapter, ReclipAdapter):
        family = adapter.describe().get("family", type(adapter).__name__)
        raise CheckpointError(f"{adapter.model_id}: --backend jax evaluates our own checkpoints (architecture "
                              f"reclip-clip), not {family} models; use --backend torch")
    return FlaxReclipAdapter(adapter)


class FlaxReclipAdapter(ModelAdapter):
    cut_text_padding: bool = True  # as TorchAdapter's: text batches cut where the tower makes it exact

    def __init__(self, torch_adapter: ReclipAdapter):
        jax = import_jax()
        from reclip_eval.flax_models.clip import CLIP
        from reclip_eval.flax_models.convert import torch_to_flax

        self._torch = torch_adapter  # its describe(), tokenizer, transform and FLOP count (same architecture)
        self.model_id = torch_adapter.model_id
        self.image_size = torch_adapter.image_size
        self.transform = torch_adapter.transform
        self.config = torch_adapter.model.config
        state = {k: v.detach().cpu().numpy() for k, v in torch_adapter.model.state_dict().items()}
        self._host_params = torch_to_flax(state, self.config, source=self.model_id)
        self._module_class = CLIP
        self._jax = jax
        self.place("cpu")

    def place(self, device: str, precision: str = "fp32") -> FlaxReclipAdapter:
        super().place(device, precision)
        jax = self._jax
        import jax.numpy as jnp

        self._device = _jax_device(jax, device)
        self._params = jax.device_put(self._host_params, self._device)
        # bf16: compute in bfloat16 with float32 parameters, as torch's autocast does.
        module = self._module_class(self.config, dtype=jnp.bfloat16 if precision == "bf16" else None)
        self._encode_image = jax.jit(partial(module.apply, method=module.encode_image))
        self._encode_text = jax.jit(partial(module.apply, method=module.encode_text))
        return self

    def encode_images(self, pixels: Any) -> np.ndarray:
        nhwc = np.asarray(pixels, dtype=np.float32).transpose(0, 2, 3, 1)  # the DataLoader's NCHW -> flax's NHWC
        out = self._encode_image({"params": self._params}, self._jax.device_put(nhwc, self._device))
        return np.asarray(out, dtype=np.float32)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self._torch.tokenize(list(texts))
        length = self._torch.decisive_text_length(tokens) if self.cut_text_padding else None
        if length is not None:
            # The same tower as the torch twin's (flax_models/clip.py); rounded up to a multiple of 8 so that jit
            # compiles a few text lengths, not one per batch.
            tokens = tokens[:, :min(tokens.shape[1], -(-length // TEXT_LENGTH_STEP) * TEXT_LENGTH_STEP)]
        tokens = np.asarray(tokens, dtype=np.int32)
        out = self._encode_text({"params": self._params}, self._jax.device_put(tokens, self._device))
        return np.asarray(out, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        import flax

        return {**self._torch.describe(), "backend": BACKEND,
                "backend_versions": {"jax": self._jax.__version__, "flax": flax.__version__}}

    def image_gmacs(self) -> float:
        return self._torch.image_gmacs()  # the same function of the same weights

    def text_config(self) -> dict[str, Any]:
        # The backend is part of it: cached class embeddings computed by torch must not stand in for jax's.
        return {**self._torch.text_config(), "backend": BACKEND}


def _jax_device(jax, device: str):
    """'cpu' / 'cuda' / 'cuda:N' (the CLI's device names) -> a jax device."""
    platform, _, index = device.partition(":")
    platform = {"cuda": "gpu"}.get(platform, platform)
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        raise JaxUnavailableError(f"--backend jax: jax has no {platform!r} backend here (device {device!r}); "
                                  "install a jax build for it (jax[cuda13] for an NVIDIA GPU) or pass --device cpu"
                                  ) from None
    position = int(index) if index else 0
    if position >= len(devices):
        raise JaxUnavailableError(f"--backend jax: device {device!r} asked for, jax sees {len(devices)} "
                                  f"{platform} device(s)")
    return devices[position]
