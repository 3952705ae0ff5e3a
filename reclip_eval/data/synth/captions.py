"""Captions for scenes from a small grammar with paraphrases (word order, optional attributes, synonyms).

Concise captions (opt-in, the textured world's: `concise=True`) name each object's texture, colour and shape, and
never its size, fill pattern or position. Why: with every attribute named, a batch of 128 captions is told apart
by colour, size, pattern and position alone (about 500 single-object combinations, so a caption rarely has a
negative that differs only in shape), and the contrastive loss falls to ~0.3 without the image tower learning
shape (the issue-14 demo: colour right on every zero-shot image, shape on 25%). Measured on the budget proxy
(leaderboards/miniature-notes.md, "Budget"): naming size, pattern and position one time in four gave 49.6% top-1
on shapes-zeroshot, never naming them 60.0%, same model, steps and data size. When captions that differ only in
shape share a batch, shape is what the loss has to learn.
"""

from __future__ import annotations

import numpy as np

from reclip_eval.data.synth.world import Scene, ShapeSpec

_SHAPE_WORDS = {
    "circle": ["circle", "circle", "disk"],
    "square": ["square", "square", "box"],
    "triangle": ["triangle"],
    "star": ["star"],
    "cross": ["cross", "cross", "plus sign"],
    "hexagon": ["hexagon"],
}
_PATTERN_WORDS = {"plain": ["", "", "plain", "solid"], "striped": ["striped", "stripy"], "dotted": ["dotted", "spotted"]}
# The fine texture is named only in worlds that have it (`ShapeSpec.texture` set), so other captions are unchanged.
_TEXTURE_WORDS = {"smooth": ["", "smooth"], "lined": ["lined", "ribbed"], "checked": ["checked", "checkered"]}
_SIZE_WORDS = {"small": ["small", "little", "tiny"], "medium": ["", "", "medium"], "large": ["large", "big"]}
_POSITION = {
    "top left": ["in the top left", "at the upper left", "in the top left corner"],
    "top": ["at the top", "near the top"],
    "top right": ["in the top right", "at the upper right", "in the top right corner"],
    "left": ["on the left", "at the left side"],
    "center": ["in the center", "in the middle"],
    "right": ["on the right", "at the right side"],
    "bottom left": ["in the bottom left", "at the lower left", "in the bottom left corner"],
    "bottom": ["at the bottom", "near the bottom"],
    "bottom right": ["in the bottom right", "at the lower right", "in the bottom right corner"],
}
_SINGLE = ["{obj} {pos}.", "a picture of {obj} {pos}.", "{obj} {pos} on a plain background.",
           "there is {obj} {pos}.", "an image showing {obj} {pos}.", "{obj}."]
_SINGLE_UNPLACED = [t.replace(" {pos}", "") for t in _SINGLE]  # the same templates without the position
_MULTI = ["{objs}.", "a picture of {objs}.", "{count} shapes: {objs}.", "an image with {objs}."]
_COUNT = {2: "two", 3: "three", 4: "four"}


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def describe_object(rng: np.random.Generator, spec: ShapeSpec, with_position: bool, concise: bool = False) -> str:
    size = "" if concise else _pick(rng, _SIZE_WORDS[spec.size])
    texture = "" if spec.texture is None else _pick(rng, _TEXTURE_WORDS[spec.texture])
    pattern = "" if concise else _pick(rng, _PATTERN_WORDS[spec.pattern])
    words = [size, texture, spec.colour, pattern, _pick(rng, _SHAPE_WORDS[spec.shape])]
    phrase = _article(" ".join(w for w in words if w))
    return f"{phrase} {_pick(rng, _POSITION[spec.cell])}" if with_position else phrase


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption_scene(rng: np.random.Generator, scene: Scene, concise: bool = False) -> str:
    """One caption; different `rng` draws give paraphrases of the same scene (`concise`: see the module doc)."""
    if len(scene.objects) == 1:
        spec = scene.objects[0]
        template = _pick(rng, _SINGLE)
        obj = describe_object(rng, spec, with_position=False, concise=concise)
        if concise:
            return _SINGLE_UNPLACED[_SINGLE.index(template)].format(obj=obj)
        return template.format(obj=obj, pos=_pick(rng, _POSITION[spec.cell]))
    with_position = not concise and bool(rng.integers(2))
    order = rng.permutation(len(scene.objects))
    parts = [describe_object(rng, scene.objects[i], with_position, concise) for i in order]
    template = _pick(rng, _MULTI)
    return template.format(objs=_join(parts), count=_COUNT[len(parts)])
