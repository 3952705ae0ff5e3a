"""Training image augmentations of a stage, as data: a list of `AugmentOp` mappings parsed and checked with the
config schema, built into a torchvision v2 pipeline whose randomness is a pure function of a per-sample seed.

YAML shape (one mapping per op, in the order they apply; keys an op does not take are errors)::

    augment:
      - {op: random_resized_crop, scale: [0.4, 1.0], ratio: [0.75, 1.3333]}
      - {op: color_jitter, brightness: 0.32, contrast: 0.32, saturation: 0.32, hue: 0.08, p: 0.8}
      - {op: grayscale, p: 0.2}

Sources of the presets (`PRESETS`):

- CLIPA ("An Inverse Scaling Law for CLIP Training", Li, Wang, Xie 2023): inception crop of area 40-100%, colour
  jitter (0.32, 0.32, 0.32, 0.08) with p 0.8 and grayscale with p 0.2. The jitter is SimCLR's colour distortion at
  strength 0.4 (brightness, contrast, saturation 0.8 s; hue 0.2 s).
- SLIP (Mu et al. 2021), its SimCLR views: RandomResizedCrop of area 8-100%, ColorJitter (0.4, 0.4, 0.4, 0.1) with
  p 0.8, grayscale p 0.2, Gaussian blur sigma 0.1-2 with p 0.5, horizontal flip.
- RandAugment: torchvision's `v2.RandAugment` with its defaults (2 ops, magnitude 9).

A random_resized_crop makes the image_size x image_size crop itself, in place of the evaluation transform's resize +
centre crop, and so applies first wherever it is listed; every other op applies to the uint8 crop in list order,
before the conversion to float and the normalisation. With no ops the result is bit for bit
`reclip_eval.data.transforms.image_transform`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from reclip_eval.config import Rule, at_least, enforce_rules, from_dict, to_dict
from reclip_eval.registry import Registry, unknown_name

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torchvision.transforms import v2

    from reclip_eval.models.config import PreprocessConfig

# torch and torchvision are imported where a pipeline is built or run, not here: recipes parse their `augment`
# lists with this module, and `reclip-eval recipes` / `flops` should not pay for torchvision's import.
Builder = Callable[["AugmentOp", int, "v2.InterpolationMode"], "v2.Transform"]


def _v2() -> ModuleType:
    from torchvision.transforms import v2

    return v2


@dataclass(frozen=True)
class OpKind:
    """How one op name becomes a transform: `build(op, image_size, interpolation)`."""

    build: Builder
    defaults: dict[str, Any]  # every key the op takes, with the value an omitted key means (torchvision's own)
    crops: bool  # makes the image_size crop itself, in place of resize + centre crop


OP_KINDS: Registry[OpKind] = Registry("augmentation op")

# The keys an op may take besides `op`; each op takes the subset named by its registered defaults.
_OPTIONS = ("p", "scale", "ratio", "brightness", "contrast", "saturation", "hue", "sigma", "num_ops", "magnitude")


def _known_op(name: str) -> str | None:
    return None if name in OP_KINDS.names() else str(unknown_name("augmentation op", name, OP_KINDS.names()))


def _taken_by_op(key: str) -> Rule:
    """`key` may be set only on ops that take it (an unknown op is reported once, under `op`)."""
    def check(value: Any, name: str) -> str | None:
        if value is None or name not in OP_KINDS.names():
            return None
        taken = OP_KINDS.get(name).defaults
        return None if key in taken else f"{name} takes no {key!r}; it takes {', '.join(sorted(taken)) or 'no keys'}"

    return Rule((key, "op"), check)


def _pair(key: str, high: float = math.inf) -> Rule:
    """A [low, high] range with 0 < low <= high <= `high`."""
    bound = "" if high == math.inf else f" <= {high:g}"

    def check(value: Any) -> str | None:
        if value is None or 0 < value[0] <= value[1] <= high:
            return None
        return f"expected [a, b] with 0 < a <= b{bound}, got {list(value)}"

    return Rule((key,), check)


def _within(key: str, low: float, high: float) -> Rule:
    return Rule((key,), lambda v: None if v is None or low <= v <= high else f"must be in [{low:g}, {high:g}], got {v}")


@dataclass(frozen=True)
class AugmentOp:
    """One augmentation of a stage's list. Keys left out take the op's defaults (filled in on construction, so two
    specs that mean the same thing compare equal and the training record lists every value used)."""

    op: str
    p: float | None = None  # probability of applying the op (flip, grayscale; RandomApply for jitter and blur)
    scale: tuple[float, float] | None = None  # random_resized_crop: range of the crop's area fraction
    ratio: tuple[float, float] | None = None  # random_resized_crop: range of the crop's aspect ratio
    brightness: float | None = None
    contrast: float | None = None
    saturation: float | None = None
    hue: float | None = None
    sigma: tuple[float, float] | None = None  # gaussian_blur: range of the blur's standard deviation
    num_ops: int | None = None  # randaugment: ops applied per image
    magnitude: int | None = None  # randaugment: strength, of torchvision's 31 bins (0-30)

    config_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(("op",), _known_op),
        *(_taken_by_op(key) for key in _OPTIONS),
        _within("p", 0, 1),
        _pair("scale", high=1),
        _pair("ratio"),
        _pair("sigma"),
        *(at_least(key, 0) for key in ("brightness", "contrast", "saturation")),
        _within("hue", 0, 0.5),  # torchvision's limit: a hue shift beyond half the colour wheel wraps around
        at_least("num_ops", 0),
        _within("magnitude", 0, 30),
    )

    def __post_init__(self) -> None:
        enforce_rules(self)
        for key, default in OP_KINDS.get(self.op).defaults.items():
            value = default if getattr(self, key) is None else getattr(self, key)
            object.__setattr__(self, key, tuple(map(float, value)) if isinstance(value, (list, tuple)) else value)


def augment_op(name: str, *, crops: bool = False, **defaults: Any) -> Callable[[Builder], Builder]:
    """Register the builder of op `name`, which takes the keys of `defaults` (their values mean 'left out')."""
    unknown = set(defaults) - set(_OPTIONS)
    if unknown:
        raise ValueError(f"augmentation op {name!r}: {sorted(unknown)} are not AugmentOp fields")

    def register(build: Builder) -> Builder:
        OP_KINDS.register(name)(OpKind(build, defaults, crops))
        return build

    return register


@augment_op("random_resized_crop", crops=True, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
def _random_resized_crop(op: AugmentOp, image_size: int, interpolation: v2.InterpolationMode) -> v2.Transform:
    return _v2().RandomResizedCrop(image_size, scale=op.scale, ratio=op.ratio, interpolation=interpolation,
                                antialias=True)


@augment_op("horizontal_flip", p=0.5)
def _horizontal_flip(op: AugmentOp, image_size: int, interpolation: v2.InterpolationMode) -> v2.Transform:
    return _v2().RandomHorizontalFlip(p=op.p)


@augment_op("color_jitter", brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, p=1.0)
def _color_jitter(op: AugmentOp, image_size: int, interpolation: v2.InterpolationMode) -> v2.Transform:
    jitter = _v2().ColorJitter(brightness=op.brightness, contrast=op.contrast, saturation=op.saturation, hue=op.hue)
    return _v2().RandomApply([jitter], p=op.p)


@augment_op("grayscale", p=0.1)
def _grayscale(op: AugmentOp, image_size: int, interpolation: v2.InterpolationMode) -> v2.Transform:
    return _v2().RandomGrayscale(p=op.p)  # keeps three (equal) channels


@augment_op("gaussian_blur", sigma=(0.1, 2.0), p=1.0)
def _gaussian_blur(op: AugmentOp, image_size: int, interpolation: v2.InterpolationMode) -> v2.Transform:
    # SLIP blurs with PIL by radius only; torchvision needs a kernel, so SimCLR's: about 10% of the side, odd.
    kernel = max(3, int(0.1 * image_size) // 2 * 2 + 1)
    return _v2().RandomApply([_v2().GaussianBlur(kernel, sigma=op.sigma)], p=op.p)


@augment_op("randaugment", num_ops=2, magnitude=9)
def _randaugment(op: AugmentOp, image_size: int, interpolation: v2.InterpolationMode) -> v2.Transform:
    return _v2().RandAugment(num_ops=op.num_ops, magnitude=op.magnitude)


def check_augment(ops: Sequence[AugmentOp]) -> str | None:
    """What is wrong with a list as a whole (for a stage's `config_rules`), or None: at most one op may crop."""
    croppers = [op.op for op in ops if op is not None and op.op in OP_KINDS.names() and OP_KINDS.get(op.op).crops]
    return None if len(croppers) <= 1 else f"at most one cropping op per stage, got {len(croppers)}: {croppers}"


@dataclass(frozen=True)
class _AugmentList:
    """A wrapper so that `parse_augment` reports problems as `augment[i].key`, as a stage's field would."""

    augment: tuple[AugmentOp, ...] = ()

    config_rules: ClassVar[tuple[Rule, ...]] = (Rule(("augment",), check_augment),)


def parse_augment(raw: Any, source: str = "<augment>") -> tuple[AugmentOp, ...]:
    """A YAML list of op mappings -> ops; one ConfigError (from `source`) lists every problem, before any image."""
    return from_dict(_AugmentList, {"augment": raw}, source=source).augment


def describe_augment(ops: Sequence[AugmentOp]) -> list[dict]:
    """What the training record keeps: each op with every value it used; `parse_augment` reads it back."""
    return [{key: value for key, value in to_dict(op).items() if value is not None} for op in ops]


@dataclass(frozen=True)
class SeededTransform:
    """(PIL image, seed) -> normalised float tensor (3, size, size). A class rather than a closure so data-loader
    workers started by spawn can pickle it."""

    pipeline: v2.Compose

    def __call__(self, image: Image.Image, seed: int) -> torch.Tensor:
        # torchvision v2 draws from torch's global CPU generator. Seeding it per sample inside fork_rng makes the
        # draws depend on the sample alone (a resumed loader skips samples without decoding them) and leaves the
        # caller's RNG as it was. default_generator, not torch.manual_seed, which would also reseed CUDA.
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.pipeline(image)


@dataclass(frozen=True)
class StackedViews:
    """(image, seed) -> (1 + 2, C, H, W): the `main` transform's image and two `view` transforms of it, each from
    its own seed (SLIP's CLIP image and its two SimCLR views)."""

    main: SeededTransform
    view: SeededTransform

    def __call__(self, image: Image.Image, seed: int) -> torch.Tensor:
        import torch

        seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64) >> 1]
        return torch.stack([self.main(image, seed), self.view(image, seeds[0]), self.view(image, seeds[1])])


def train_image_transform(image_size: int, preprocess: PreprocessConfig,
                          ops: Sequence[AugmentOp]) -> Callable[[Image.Image, int], torch.Tensor]:
    """The training transform of a stage: `image_transform`'s geometry (or the op that crops), then `ops` in order."""
    import torch

    from reclip_eval.data.transforms import interpolation_mode, resize_and_centre_crop, to_rgb

    v2 = _v2()
    problem = check_augment(ops)
    if problem:
        raise ValueError(f"augment: {problem}")
    interpolation = interpolation_mode(preprocess)
    built = [(OP_KINDS.get(op.op), op) for op in ops]
    croppers = [kind.build(op, image_size, interpolation) for kind, op in built if kind.crops]
    geometry = croppers or resize_and_centre_crop(image_size, preprocess)  # the evaluation's, shared
    rest = [kind.build(op, image_size, interpolation) for kind, op in built if not kind.crops]
    return SeededTransform(v2.Compose([
        v2.Lambda(to_rgb),
        v2.ToImage(),
        *geometry,
        *rest,
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(preprocess.mean), std=list(preprocess.std)),
    ]))


_INCEPTION_CROP = AugmentOp("random_resized_crop", scale=(0.4, 1.0), ratio=(3 / 4, 4 / 3))
_GRAYSCALE = AugmentOp("grayscale", p=0.2)

PRESETS: dict[str, tuple[AugmentOp, ...]] = {
    "clipa": (
        _INCEPTION_CROP,
        AugmentOp("color_jitter", brightness=0.32, contrast=0.32, saturation=0.32, hue=0.08, p=0.8),
        _GRAYSCALE,
    ),
    "simclr": (  # SLIP's SimCLR views, in SLIP's order
        AugmentOp("random_resized_crop", scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
        AugmentOp("color_jitter", brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.8),
        _GRAYSCALE,
        AugmentOp("gaussian_blur", sigma=(0.1, 2.0), p=0.5),
        AugmentOp("horizontal_flip", p=0.5),
    ),
    "randaugment": (AugmentOp("randaugment", num_ops=2, magnitude=9),),
}
# "Scaling (Down) CLIP" (Li, Xie, Cubuk 2023, arXiv 2404.08197) trains "CLIP+Data Augmentation", but its exact
# augmentation could not be verified from public text. This preset ASSUMES it is CLIPA's (Cihang Xie is an author of
# both papers); a recipe card that uses it must say so.
PRESETS["clip_da"] = PRESETS["clipa"]


def preset(name: str) -> tuple[AugmentOp, ...]:
    """The ops of a named preset; an unknown name lists the known ones."""
    if name not in PRESETS:
        raise unknown_name("augmentation preset", name, list(PRESETS))
    return PRESETS[name]

