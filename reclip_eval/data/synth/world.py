"""Scenes of 1-4 coloured shapes, sampled deterministically from a seed.

Each attribute sits at a visual scale, which decides from which image size on a model can read it. The
calibration (benchmarks/world_calibration.py; single objects rendered at the world's 128 px, resized down, a
supervised probe of the miniature's patch-8 image tower: numbers in benchmarks/results/world_calibration*.json;
the current world's: world_calibration_p32.json, 1000 steps) measures this. The miniature trains at 64 px at most
(training/mini-*.yaml), so 64 px is its full size:

    colour   the fill of a whole object (radius 14-30% of the side): it sets the region's mean colour, which any
             downsampling keeps (99.9-100% from 16 px).
    shape    the object's outline, at the scale of the object: it needs a few pixels per radius, so it is the
             slowest to learn (after 1000 steps 49% at 16 px, 71% at 32, 78% at 64, chance 17%; medium and large
             objects at 32 px 79 / 87%, 90-92% after 1500 steps) and small objects lose it first as the image
             shrinks.
    size, position   a radius of 0.14 / 0.2 / 0.3 of the side, a 3x3 grid of cells: coarse geometry.
    pattern  light stripes or dots with a period of 1/16 of the side (8 px at 128 px). The light marks lighten
             the region's mean colour, so the pattern survives downsampling below its period as a colour
             statistic (95% at 16 px): it is not a fine attribute, whatever its period suggests.
    texture  the fine attribute (opt-in, `with_texture`; the original world has none): two tones fill +d and
             fill -d with a period of 1/32 of the side (4 px at 128 px, 2 px at the miniature's 64 px; render.py).
             The tones average to the plain fill, so once the period falls to a pixel (32 px) or below the region
             is the plain colour: read at 100% at 64 px, 39% at 48 px and 35-37% at 32 px and below (chance
             33%). It is what only full resolution shows, so what a high-resolution finetune has to add.

Everything here is pure: a scene is data, `rng` comes from `sample_rng(seed, stream, index)` so sample `index`
of a stream is the same whatever the number of worker processes. Options that the original world lacks draw from
`rng` only when they are on, so the original world's sets stay byte for byte what they were.
"""

from __future__ import annotations

import dataclasses
import itertools
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
# The fine texture (render.py draws it): none, rows of alternating tones, a checkerboard of them.
TEXTURES = ("smooth", "lined", "checked")
# A 3x3 grid of named cells; the scene's objects occupy distinct cells so their positions can be named.
CELLS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)

# Named streams keep different sets from sharing draws even with the same seed.
STREAMS = {"train": 0, "zeroshot": 1, "retrieval": 2, "zeroshot-v2": 3, "zeroshot-sketch": 4, "zeroshot-r": 5,
           "zeroshot-a": 6, "probe-train": 7, "probe-test": 8, "lvis-train": 9, "lvis-val": 10,
           "calibration": 11, "zeroshot-texture": 12}


@dataclass(frozen=True)
class WorldOptions:
    """What sets a world apart from the original one (every option off: the original world, byte for byte)."""

    fine_texture: bool = False  # objects carry one of TEXTURES, named in the captions
    concise_captions: bool = False  # captions name texture, colour and shape only (captions.py says why)


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
    texture: str | None = None  # one of TEXTURES; None in the original world, which has no fine texture


@dataclass(frozen=True)
class Scene:
    objects: tuple[ShapeSpec, ...]
    background: tuple[int, int, int]


def scene_to_dict(scene: Scene) -> dict:
    """The scene as plain data, without the options the original world lacks (so its records stay as they were)."""
    data = dataclasses.asdict(scene)
    for obj in data["objects"]:
        if obj["texture"] is None:
            del obj["texture"]
    return data


# The attributes a zero-shot class can fix, with their values; a class name orders them as the captions do
# (captions.py: texture, colour, shape), and uses the captions' word for each value.
CLASS_ATTRIBUTES: dict[str, tuple[str, ...]] = {"texture": TEXTURES, "colour": tuple(COLOURS), "shape": SHAPES}


def attribute_classes(attributes: tuple[str, ...]) -> list[tuple[str, str]]:
    """The zero-shot classes that fix `attributes` (keys of CLASS_ATTRIBUTES): (class id, class name) for every
    combination of their values, in label order. The id joins the values with "_" in the order given
    (`parse_class_id` reads it back), the name with spaces in the captions' word order."""
    classes = []
    for values in itertools.product(*(CLASS_ATTRIBUTES[a] for a in attributes)):
        fixed = dict(zip(attributes, values, strict=True))
        classes.append(("_".join(values), " ".join(fixed[a] for a in CLASS_ATTRIBUTES if a in fixed)))
    return classes


def parse_class_id(attributes: tuple[str, ...], class_id: str) -> dict[str, str]:
    """attribute -> value for a class id of `attribute_classes(attributes)` (no value contains "_")."""
    return dict(zip(attributes, class_id.split("_"), strict=True))


def class_names() -> list[tuple[str, str]]:
    """The zero-shot classes: (class id, class name) for every colour x shape, in label order."""
    return attribute_classes(("colour", "shape"))


def shape_class_names() -> list[tuple[str, str]]:
    """The classes of the colourless (sketch) variant: the shapes alone."""
    return attribute_classes(("shape",))


def texture_class_names() -> list[tuple[str, str]]:
    """The classes of the fine-texture task: shape x texture ("circle_lined", "lined circle"), any colour."""
    return attribute_classes(("shape", "texture"))


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
    with_texture: bool = False,
    texture: str | None = None,
) -> ShapeSpec:
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    colour = colour or list(COLOURS)[rng.integers(len(COLOURS))]
    size = sizes[rng.integers(len(sizes))]
    pattern = PATTERNS[rng.integers(len(PATTERNS))]
    cx, cy = _place(rng, cell, size)
    angle = float(rng.uniform(-20, 20)) if shape != "circle" else 0.0
    if with_texture and texture is None:  # drawn last: the rest is as before
        texture = TEXTURES[rng.integers(len(TEXTURES))]
    return ShapeSpec(shape, colour, size, pattern, cell, cx, cy, angle, texture)


def sample_scene(rng: np.random.Generator, max_objects: int = 4, *, with_texture: bool = False) -> Scene:
    """A training/retrieval scene: 1..max_objects objects in distinct cells (single objects are most common)."""
    weights = np.array([0.4, 0.3, 0.2, 0.1][:max_objects])
    count = 1 + int(rng.choice(len(weights), p=weights / weights.sum()))
    cells = [CELLS[i] for i in rng.choice(len(CELLS), size=count, replace=False)]
    # Large objects in neighbouring cells would overlap: with several objects use small and medium only.
    sizes = tuple(SIZES) if count == 1 else ("small", "medium")
    objects = tuple(sample_object(rng, cell, sizes=sizes, with_texture=with_texture) for cell in cells)
    return Scene(objects=objects, background=_sample_background(rng))


def sample_class_scene(rng: np.random.Generator, colour: str | None, shape: str | None,
                       sizes: tuple[str, ...] = tuple(SIZES), *, with_texture: bool = False,
                       texture: str | None = None) -> Scene:
    """A zero-shot classification image: one object of the given class, anywhere, any size and pattern
    (`colour=None` / `shape=None`: any colour / shape; `texture=None` with `with_texture`: any texture)."""
    cell = CELLS[rng.integers(len(CELLS))]
    obj = sample_object(rng, cell, shape=shape, colour=colour, sizes=sizes, with_texture=with_texture,
                        texture=texture)
    return Scene(objects=(obj,), background=_sample_background(rng))
