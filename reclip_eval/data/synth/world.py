"""Scenes of 1-4 coloured shapes, sampled deterministically from a seed.

Attributes live at different visual scales so that the paper's low-res-then-high-res effect shows in miniature:
colour and shape survive heavy downsampling, size and position survive moderate downsampling, while the fill
pattern (fine stripes or dots, a period of ~1/16 of the image) is only visible near full resolution.

Everything here is pure: a scene is data, `rng` comes from `sample_rng(seed, stream, index)` so sample `index`
of a stream is the same whatever the number of worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 90, 220),
    "yellow": (240, 200, 20),
    "purple": (148, 60, 189),
    "orange": (255, 127, 14),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon")
SIZES: dict[str, float] = {"small": 0.14, "medium": 0.2, "large": 0.3}  # radius as a fraction of the side
PATTERNS = ("plain", "striped", "dotted")
# A 3x3 grid of named cells; the scene's objects occupy distinct cells so their positions can be named.
CELLS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)

# Named streams keep different sets from sharing draws even with the same seed.
STREAMS = {"train": 0, "zeroshot": 1, "retrieval": 2, "zeroshot-v2": 3, "zeroshot-sketch": 4, "zeroshot-r": 5,
           "zeroshot-a": 6, "probe-train": 7, "probe-test": 8, "lvis-train": 9, "lvis-val": 10}


@dataclass(frozen=True)
class ShapeSpec:
    shape: str
    colour: str
    size: str
    pattern: str
    cell: str
    cx: float  # centre, as a fraction of the side
    cy: float
    angle: float  # degrees


@dataclass(frozen=True)
class Scene:
    objects: tuple[ShapeSpec, ...]
    background: tuple[int, int, int]


def class_names() -> list[tuple[str, str]]:
    """The zero-shot classes: (class id, class name) for every colour x shape, in label order."""
    return [(f"{c}_{s}", f"{c} {s}") for c in COLOURS for s in SHAPES]


def shape_class_names() -> list[tuple[str, str]]:
    """The classes of the colourless (sketch) variant: the shapes alone."""
    return [(s, s) for s in SHAPES]


def sample_rng(seed: int, stream: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, STREAMS[stream], index])


def _sample_background(rng: np.random.Generator) -> tuple[int, int, int]:
    # Light, low-saturation backgrounds so every shape colour stays visible.
    base = rng.integers(200, 246)
    tint = rng.integers(-12, 13, size=3)
    return tuple(int(np.clip(base + t, 0, 255)) for t in tint)


def _place(rng: np.random.Generator, cell: str, size: str) -> tuple[float, float]:
    row, col = divmod(CELLS.index(cell), 3)
    radius = SIZES[size]
    # Jitter inside the cell but keep the shape inside the image.
    cx = (col + 0.5) / 3 + rng.uniform(-0.06, 0.06)
    cy = (row + 0.5) / 3 + rng.uniform(-0.06, 0.06)
    return float(np.clip(cx, radius, 1 - radius)), float(np.clip(cy, radius, 1 - radius))


def sample_object(
    rng: np.random.Generator,
    cell: str,
    *,
    shape: str | None = None,
    colour: str | None = None,
    sizes: tuple[str, ...] = tuple(SIZES),
) -> ShapeSpec:
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    colour = colour or list(COLOURS)[rng.integers(len(COLOURS))]
    size = sizes[rng.integers(len(sizes))]
    pattern = PATTERNS[rng.integers(len(PATTERNS))]
    cx, cy = _place(rng, cell, size)
    angle = float(rng.uniform(-20, 20)) if shape != "circle" else 0.0
    return ShapeSpec(shape, colour, size, pattern, cell, cx, cy, angle)


def sample_scene(rng: np.random.Generator, max_objects: int = 4) -> Scene:
    """A training/retrieval scene: 1..max_objects objects in distinct cells (single objects are most common)."""
    weights = np.array([0.4, 0.3, 0.2, 0.1][:max_objects])
    count = 1 + int(rng.choice(len(weights), p=weights / weights.sum()))
    cells = [CELLS[i] for i in rng.choice(len(CELLS), size=count, replace=False)]
    # Large objects in neighbouring cells would overlap: with several objects use small and medium only.
    sizes = tuple(SIZES) if count == 1 else ("small", "medium")
    objects = tuple(sample_object(rng, cell, sizes=sizes) for cell in cells)
    return Scene(objects=objects, background=_sample_background(rng))


def sample_class_scene(rng: np.random.Generator, colour: str | None, shape: str,
                       sizes: tuple[str, ...] = tuple(SIZES)) -> Scene:
    """A zero-shot classification image: one object of the given class, anywhere, any size and pattern
    (`colour=None`: any colour)."""
    cell = CELLS[rng.integers(len(CELLS))]
    obj = sample_object(rng, cell, shape=shape, colour=colour, sizes=sizes)
    return Scene(objects=(obj,), background=_sample_background(rng))
