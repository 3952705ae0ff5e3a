"""Every model kind `--model` can load, plugged in at one place above the packages that define them.

The zoo's own kinds (ours, open_clip, transformers CLIPModel) come with its resolver; the packages above the zoo
register theirs when imported, and this list imports them: a kind from a new package is one line here. The CLI loads
models through `load_adapter` from here, so every command sees every kind.
"""

from __future__ import annotations

import reclip_eval.detect  # noqa: F401  (registers the `reclip_detector` kind)
from reclip_eval.zoo.model_kinds import ModelKind, model_kinds
from reclip_eval.zoo.resolve import load_adapter

__all__ = ["ModelKind", "load_adapter", "model_kinds"]
