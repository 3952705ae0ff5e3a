"""Image token reduction: which patch tokens of a training stage enter the image tower.

A stage's `image_tokens` spec (`ImageTokens`) names one strategy of the comparison in CLIPA ("An Inverse Scaling Law
for CLIP Training", Li, Wang, Xie 2023, Section 3.1 and its Figure 3) and the RECLIP paper's Table 10:

- `resize` (RECLIP, CLIPA's choice): every patch of the stage's `image_size`; the reduction is the smaller image.
- `random` (FLIP; CLIPA's "random masking"): per sample, the tokens of the K smallest of N uniform draws, after the
  position embedding is added; the class token (if the model has one) is always kept.
- `grid` (CLIPA's "grid masking"): one patch of each `window` x `window` cell of the patch grid, its place in the
  cell drawn per cell and sample. CLIPA released no code for it (its docs say so); this follows the paper's text.
- `block` (CLIPA's "block masking"): one contiguous rectangle of K patches, as close to square as the grid allows,
  at a random position per sample; also from the paper's text only.

Masking happens in training only (evaluation sees every token), and always with an explicit generator: the trainer
seeds one per step (and micro-batch) from the recipe's seed, so a resumed run and both passes of the micro-batched
loss draw the same tokens, and nothing depends on the global RNG. `select_image_tokens` is the one function the
torch model, the micro-batched loss (through the model) and the FLOP counter use; the flax tower mirrors it with the
same index arithmetic (`grid_window_bases`, `block_shape`), pinned equal in tests/test_token_reduction.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np

from reclip_eval.config import Rule, enforce_rules

if TYPE_CHECKING:  # torch is imported where it draws: the spec is also the flax tower's and the recipe's
    import torch

KINDS = ("resize", "random", "grid", "block")


def _one_budget(kind: str, keep: int | None, ratio: float | None) -> str | None:
    if kind in ("resize", "grid"):
        return None if keep is None and ratio is None else (
            f"{kind} keeps a fixed set of tokens; keep and ratio are for random and block masking")
    if (keep is None) == (ratio is None):
        return f"{kind} masking needs exactly one of keep (tokens kept) and ratio (fraction masked)"
    return None


@dataclass(frozen=True)
class ImageTokens:
    kind: Literal["resize", "random", "grid", "block"] = "resize"
    keep: int | None = None  # patch tokens kept (the class token is not counted)
    ratio: float | None = None  # fraction of the patch tokens masked (FLIP's "mask ratio"): K = round(N * (1 - r))
    window: int = 2  # grid only: one patch per window x window cell (CLIPA: 2x2, i.e. 25% kept)

    config_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(("kind", "keep", "ratio"), _one_budget),
        Rule(("keep",), lambda k: None if k is None or k >= 1 else f"must be >= 1, got {k}"),
        Rule(("ratio",), lambda r: None if r is None or 0 <= r < 1 else f"must be in [0, 1), got {r}"),
        Rule(("window",), lambda w: None if w >= 1 else f"must be >= 1, got {w}"),
    )

    def __post_init__(self) -> None:
        enforce_rules(self)

    @property
    def masks(self) -> bool:
        return self.kind != "resize"

    def kept(self, grid_hw: tuple[int, int]) -> int:
        """Patch tokens that enter the tower on a (rows, cols) patch grid (raises if the spec cannot apply)."""
        problem = self.problem(grid_hw)
        if problem:
            raise ValueError(f"image_tokens: {problem}")
        return self._kept(grid_hw)

    def _kept(self, grid_hw: tuple[int, int]) -> int:
        rows, cols = grid_hw
        if self.kind == "resize":
            return rows * cols
        if self.kind == "grid":
            return (rows // self.window) * (cols // self.window)
        return self.keep if self.keep is not None else max(1, round(rows * cols * (1 - self.ratio)))

    def problem(self, grid_hw: tuple[int, int]) -> str | None:
        """What keeps this spec from applying to a (rows, cols) patch grid, or None."""
        rows, cols = grid_hw
        if self.kind == "grid" and (rows % self.window or cols % self.window):
            return f"grid masking with window {self.window} needs a patch grid divisible by it, got {rows}x{cols}"
        if self.kind in ("random", "block") and self._kept(grid_hw) > rows * cols:
            return f"keep {self.keep} exceeds the {rows * cols} patches of a {rows}x{cols} grid"
        if self.kind == "block" and block_shape(self._kept(grid_hw), grid_hw) is None:
            return f"no rectangle of {self._kept(grid_hw)} patches fits a {rows}x{cols} grid"
        return None

    def describe(self) -> str:
        """One short label for tables and logs: 'resize', 'random keep 16', 'grid 2x2', ..."""
        if self.kind == "resize":
            return "resize"
        if self.kind == "grid":
            return f"grid {self.window}x{self.window}"
        return f"{self.kind} " + (f"keep {self.keep}" if self.keep is not None else f"ratio {self.ratio:g}")


def block_shape(kept: int, grid_hw: tuple[int, int]) -> tuple[int, int] | None:
    """(rows, cols) of the most nearly square rectangle of exactly `kept` patches that fits the grid, or None."""
    fits = [(r, kept // r) for r in range(1, kept + 1) if kept % r == 0 and r <= grid_hw[0] and kept // r <= grid_hw[1]]
    return min(fits, key=lambda shape: (abs(shape[0] - shape[1]), shape[0])) if fits else None


def grid_window_bases(grid_hw: tuple[int, int], window: int) -> np.ndarray:
    """Flat index of each window's top-left patch, windows in row-major order: (cells,)."""
    rows, cols = grid_hw
    top = np.arange(0, rows, window)[:, None] * cols
    return (top + np.arange(0, cols, window)[None, :]).reshape(-1)


def block_offsets(shape: tuple[int, int], cols: int) -> np.ndarray:
    """Flat offsets of a (rows, cols)-shaped block's patches from its top-left patch, row-major: (K,)."""
    return (np.arange(shape[0])[:, None] * cols + np.arange(shape[1])[None, :]).reshape(-1)


def select_image_tokens(x: torch.Tensor, spec: ImageTokens, grid_hw: tuple[int, int],
                        generator: torch.Generator | None) -> torch.Tensor:
    """(B, N, D) patch tokens (position embedding added) -> (B, K, D) kept tokens, drawn with `generator`.

    `generator` may be None only on the meta device (the FLOP counter, where no value is drawn)."""
    import torch

    if not spec.masks:
        return x
    if generator is None and x.device.type != "meta":
        raise ValueError("image token masking draws from an explicit torch.Generator; got none")
    batch, tokens, dim = x.shape
    if tokens != grid_hw[0] * grid_hw[1]:
        raise ValueError(f"{tokens} tokens do not form the {grid_hw[0]}x{grid_hw[1]} patch grid")
    kept = spec.kept(grid_hw)
    draw = {"generator": generator, "device": x.device}
    if spec.kind == "random":
        index = torch.rand(batch, tokens, **draw).argsort(dim=1)[:, :kept]
    elif spec.kind == "grid":
        w = spec.window
        place = torch.randint(0, w * w, (batch, kept), **draw)  # the kept patch's place in its cell
        index = torch.as_tensor(grid_window_bases(grid_hw, w), device=x.device) + (place // w) * grid_hw[1] + place % w
    else:
        shape = block_shape(kept, grid_hw)
        top = torch.randint(0, grid_hw[0] - shape[0] + 1, (batch, 1), **draw)
        left = torch.randint(0, grid_hw[1] - shape[1] + 1, (batch, 1), **draw)
        index = top * grid_hw[1] + left + torch.as_tensor(block_offsets(shape, grid_hw[1]), device=x.device)
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, dim))


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that is a function of a tuple of ints only (numpy's SeedSequence mixes them)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0] >> 1)


def step_generator(device: str | torch.device, *keys: int) -> torch.Generator:
    """A generator seeded by a tuple of ints (recipe seed, stage, step, rank, micro-batch): the same tuple, the same
    draws, on any process and after any resume."""
    import torch

    return torch.Generator(device=device).manual_seed(derive_seed(*keys))


def mask_generators(spec: ImageTokens | None, device, *keys: int):
    """micro-batch index -> its generator for one training step keyed by `keys` (seed, stage, step, rank), or
    None when `spec` masks nothing: a resumed run and both passes of the micro-batched loss draw the same tokens."""
    return lambda chunk: step_generator(device, *keys, chunk) if spec is not None and spec.masks else None


def legacy_mask_ratio(ratio: float) -> dict:
    """The `image_tokens` mapping that a recipe's old `mask_ratio: r` meant (FLIP random masking; 0: none)."""
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool):
        return {"kind": "random", "ratio": ratio}  # the schema reports the bad value under image_tokens.ratio
    return {"kind": "resize"} if ratio == 0 else {"kind": "random", "ratio": float(ratio)}

