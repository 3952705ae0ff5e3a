"""Draw a Scene with PIL. Shapes are drawn at 2x and downsampled, so edges are anti-aliased like photos.

The fine texture (world.py says why it sits at its scale) adds d times a +-1 square wave of period TEXTURE_PERIOD
to the fill, d = min(TEXTURE_AMPLITUDE, value - h, 255 - h - value) per channel (at least 0), with a headroom h
of 3 sigma of the render noise: neither the tones nor the noise on them clip, so they average to the fill
wherever the fill is flat. Sketches and renditions draw no fill and so no texture.

Styles give the domain-shift twins of the zero-shot set (as ImageNet-Sketch/-R/-A are to ImageNet):
    photo      filled, patterned shapes on a tinted, faintly noisy background (training and shapes-zeroshot)
    sketch     grayscale outlines only on white: no colour, no pattern (shapes-sketch)
    rendition  flat cartoon fill with a thick dark outline on a two-colour gradient (shapes-r)
    cluttered  photo style over grey distractor strokes and blobs (shapes-a, with small objects only)
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from reclip_eval.data.synth.world import COLOURS, SIZES, Scene, ShapeSpec

SUPERSAMPLE = 2
PATTERN_PERIOD = 1 / 16  # stripe/dot period as a fraction of the image side (its mean survives below it: world.py)
TEXTURE_PERIOD = 1 / 32  # of the side: 4 px at the world's 128 px, 2 px at the miniature's 64 px, gone at 32 px
TEXTURE_AMPLITUDE = 40  # grey levels between each tone and the fill (less where the fill is near 0 or 255)
NOISE_STD = 3.0  # the faint noise on every image, in grey levels
TEXTURE_HEADROOM = round(3 * NOISE_STD)  # kept between a tone and 0 / 255, so the noise on it rarely clips


def _polygon(cx: float, cy: float, radii: list[float], rotation_deg: float) -> list[tuple[float, float]]:
    n = len(radii)
    points = []
    for i, r in enumerate(radii):
        theta = math.radians(rotation_deg) + 2 * math.pi * i / n
        points.append((cx + r * math.cos(theta), cy + r * math.sin(theta)))
    return points


def _outline(spec: ShapeSpec, side: int) -> list[tuple[float, float]] | None:
    """Polygon vertices in pixels, or None for a circle."""
    cx, cy, r = spec.cx * side, spec.cy * side, SIZES[spec.size] * side
    if spec.shape == "circle":
        return None
    if spec.shape == "square":
        return _polygon(cx, cy, [r * 1.0] * 4, 45 + spec.angle)
    if spec.shape == "triangle":
        return _polygon(cx, cy, [r * 1.15] * 3, -90 + spec.angle)
    if spec.shape == "hexagon":
        return _polygon(cx, cy, [r] * 6, spec.angle)
    if spec.shape == "star":
        return _polygon(cx, cy, [r * 1.1, r * 0.45] * 5, -90 + spec.angle)
    if spec.shape == "cross":
        arm = 0.36 * r
        corners = [(arm, r), (arm, arm), (r, arm), (r, -arm), (arm, -arm), (arm, -r),
                   (-arm, -r), (-arm, -arm), (-r, -arm), (-r, arm), (-arm, arm), (-arm, r)]
        a = math.radians(spec.angle)
        return [(cx + x * math.cos(a) - y * math.sin(a), cy + x * math.sin(a) + y * math.cos(a)) for x, y in corners]
    raise ValueError(f"unknown shape {spec.shape!r}")


def _mask(spec: ShapeSpec, side: int) -> Image.Image:
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    points = _outline(spec, side)
    if points is None:
        cx, cy, r = spec.cx * side, spec.cy * side, SIZES[spec.size] * side
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(points, fill=255)
    return mask


def texture_signs(texture: str, side: int) -> np.ndarray | None:
    """(side, side) array of +1/-1 (which tone each pixel of a `side`-pixel canvas takes); None for no texture.
    The wave is anchored to the image, not the object, like the patterns."""
    if texture == "smooth":
        return None
    half_period = TEXTURE_PERIOD * side / 2
    band = (np.floor((np.arange(side) + 0.5) / half_period) % 2).astype(np.int8)  # pixel centres
    if texture == "lined":  # horizontal rows
        parity = np.broadcast_to(band[:, None], (side, side))
    elif texture == "checked":
        parity = (band[:, None] + band[None, :]) % 2
    else:
        raise ValueError(f"unknown texture {texture!r}")
    return 1 - 2 * parity.astype(np.int16)


def _textured(layer: Image.Image, texture: str) -> Image.Image:
    signs = texture_signs(texture, layer.size[0])
    if signs is None:
        return layer
    pixels = np.asarray(layer, dtype=np.int16)
    room = np.minimum(pixels, 255 - pixels) - TEXTURE_HEADROOM  # both tones (and their noise) stay in 0..255
    depth = np.clip(room, 0, TEXTURE_AMPLITUDE)
    return Image.fromarray((pixels + signs[..., None] * depth).astype(np.uint8))


def _fill(spec: ShapeSpec, side: int) -> Image.Image:
    layer = _pattern(spec, side)
    return layer if spec.texture is None else _textured(layer, spec.texture)


def _pattern(spec: ShapeSpec, side: int) -> Image.Image:
    colour = COLOURS[spec.colour]
    layer = Image.new("RGB", (side, side), colour)
    if spec.pattern == "plain":
        return layer
    period = max(2.0, PATTERN_PERIOD * side)
    light = tuple(int(c + (255 - c) * 0.75) for c in colour)
    draw = ImageDraw.Draw(layer)
    if spec.pattern == "striped":  # diagonal stripes, half a period wide
        width = max(1, int(round(period / 2)))
        offset = -side
        while offset < side:
            draw.line([(offset, 0), (offset + side, side)], fill=light, width=width)
            offset += period
    elif spec.pattern == "dotted":
        radius = period / 4
        y = period / 2
        while y < side:
            x = period / 2
            while x < side:
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=light)
                x += period
            y += period
    else:
        raise ValueError(f"unknown pattern {spec.pattern!r}")
    return layer


STYLES = ("photo", "sketch", "rendition", "cluttered")


def _outline_only(spec: ShapeSpec, side: int, width: int) -> Image.Image:
    layer = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(layer)
    points = _outline(spec, side)
    if points is None:
        cx, cy, r = spec.cx * side, spec.cy * side, SIZES[spec.size] * side
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=255, width=width)
    else:
        draw.line(points + [points[0]], fill=255, width=width, joint="curve")
    return layer


def _gradient(side: int, top, bottom) -> Image.Image:
    t = np.linspace(0, 1, side, dtype=np.float32).reshape(side, 1, 1)
    pixels = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    return Image.fromarray(np.broadcast_to(pixels, (side, side, 3)).astype(np.uint8))


def _clutter(image: Image.Image, rng: np.random.Generator) -> None:
    side = image.size[0]
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(6, 12))):
        grey = int(rng.integers(90, 190))
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, side, size=4))
        if rng.random() < 0.5:
            draw.line([(x0, y0), (x1, y1)], fill=(grey,) * 3, width=int(rng.integers(2, 6)))
        else:
            r = float(rng.uniform(0.02, 0.06)) * side
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=(grey,) * 3)


def render_scene(scene: Scene, size: int, noise_seed: int, style: str = "photo") -> Image.Image:
    """The scene as an RGB image of `size` x `size` pixels, with a faint deterministic noise texture."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    side = size * SUPERSAMPLE
    style_rng = np.random.default_rng([noise_seed, 7])
    if style == "sketch":
        image = Image.new("RGB", (side, side), (255, 255, 255))
        width = max(2, side // 48)
        for spec in scene.objects:
            image.paste((30, 30, 30), (0, 0), _outline_only(spec, side, width))
    elif style == "rendition":
        top, bottom = (tuple(int(c) for c in style_rng.integers(150, 256, size=3)) for _ in range(2))
        image = _gradient(side, top, bottom)
        for spec in scene.objects:
            image.paste(COLOURS[spec.colour], (0, 0), _mask(spec, side))
            image.paste((20, 20, 20), (0, 0), _outline_only(spec, side, max(3, side // 32)))
    else:
        image = Image.new("RGB", (side, side), scene.background)
        if style == "cluttered":
            _clutter(image, style_rng)
        for spec in scene.objects:
            image.paste(_fill(spec, side), (0, 0), _mask(spec, side))
    image = image.resize((size, size), Image.Resampling.LANCZOS)
    if style == "sketch":
        image = image.convert("L").convert("RGB")
    noise = np.random.default_rng(noise_seed).normal(0, NOISE_STD, size=(size, size, 1))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)
