"""Write the synthetic world to disk in the real formats users have, using several processes.

    <out>/shapes-train/shapes-train-000000.tar   webdataset shards: NNNNNNNNN.jpg + .txt (+ .json scene)
    <out>/shapes-zeroshot/val/<class_id>/*.jpg    ImageNet validation layout (class names: tasks/shapes/)
    <out>/shapes-retrieval/images/*.jpg           Karpathy-split retrieval set, 5 captions per image,
    <out>/shapes-retrieval/dataset_shapes.json    in the format of dataset_flickr30k.json
    <out>/shapes-{v2,sketch,r,a}/val/<class_id>/  domain-shift twins of the zero-shot set (see ZEROSHOT_VARIANTS)
    <out>/shapes-texture/val/<class_id>/          shape x fine-texture classes, texture on (not in SETS: on request)
    <out>/shapes-probe/{train,test}/<class_id>/   a linear-probe set: two independent draws of the zero-shot set
    <out>/shapes-lvis/lvis_v1_{train,val}.json    an LVIS-v1-format detection set, images in train2017/ and
                                                  val2017/ found through coco_url (lvis.py; not in SETS: on request)

Each set is built in a temp directory and renamed into place with a `synth.json` manifest of its parameters, so an
interrupted run never leaves a set that looks complete. Output is the same for any number of workers.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import multiprocessing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reclip_eval.atomic import atomic_dir, atomic_path
from reclip_eval.data.synth.captions import caption_scene
from reclip_eval.data.synth.render import render_scene
from reclip_eval.data.synth.world import (
    COLOURS,
    SHAPES,
    SIZES,
    WorldOptions,
    attribute_classes,
    class_names,
    parse_class_id,
    sample_class_scene,
    sample_rng,
    sample_scene,
    scene_to_dict,
)
from reclip_eval.errors import DataError
from reclip_eval.registry import Registry

MANIFEST = "synth.json"
GENERATOR_VERSION = 2  # bump whenever the same settings would draw other images or captions
JPEG_QUALITY = 92


@dataclass(frozen=True)
class ZeroShotVariant:
    folder: str
    style: str  # render style (render.py)
    # What a class fixes (world.attribute_classes): colour x shape, or shapes alone for colourless sketches.
    class_attributes: tuple[str, ...] = ("colour", "shape")
    sizes: tuple[str, ...] = tuple(SIZES)
    # The classes need the fine texture: it is on whatever SynthConfig.fine_texture says (and the manifest says so).
    needs_texture: bool = False

    def classes(self) -> list[tuple[str, str]]:
        return attribute_classes(self.class_attributes)


# Each variant draws from its own stream, so "v2" is a fresh draw of the same distribution as "zeroshot".
ZEROSHOT_VARIANTS = {
    "zeroshot": ZeroShotVariant("shapes-zeroshot", "photo"),
    "zeroshot-v2": ZeroShotVariant("shapes-v2", "photo"),
    "zeroshot-sketch": ZeroShotVariant("shapes-sketch", "sketch", class_attributes=("shape",)),
    "zeroshot-r": ZeroShotVariant("shapes-r", "rendition"),
    "zeroshot-a": ZeroShotVariant("shapes-a", "cluttered", sizes=("small",)),
    # The fine attribute's task: read only near full resolution (benchmarks/results/world_calibration.json).
    "zeroshot-texture": ZeroShotVariant("shapes-texture", "photo", class_attributes=("shape", "texture"),
                                        needs_texture=True),
}
# The original world's sets (what `data synth` can write by default); the textured and LVIS sets are on request.
SETS = ("train", *(name for name, v in ZEROSHOT_VARIANTS.items() if not v.needs_texture), "probe", "retrieval")


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 0
    image_size: int = 128
    train_samples: int = 20000
    samples_per_shard: int = 1000
    zeroshot_per_class: int = 20
    retrieval_images: int = 250
    captions_per_image: int = 5
    lvis_train_images: int = 400  # the LVIS-format detection set (lvis.py): images per split
    lvis_val_images: int = 100
    # The world's options (world.WorldOptions): both off, the original world, byte for byte.
    fine_texture: bool = False
    concise_captions: bool = False

    @property
    def world(self) -> WorldOptions:
        return WorldOptions(**{name: getattr(self, name) for name in WORLD_SETTINGS})


WORLD_SETTINGS = tuple(f.name for f in dataclasses.fields(WorldOptions))  # SynthConfig's copy of the world options
# Settings added after sets were published (the world options): a manifest names them only when they are on, so
# that the sets made without them keep their manifests byte for byte (results record them).
_LEFT_OUT_AT_DEFAULT = WORLD_SETTINGS


def _jpeg(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _scene_json(scene) -> str:
    return json.dumps(scene_to_dict(scene))


def _noise_seed(seed: int, stream: str, index: int) -> int:
    return int(sample_rng(seed, stream, index).integers(2**31))


# --- worker jobs (module level so that they pickle) ----------------------------------------------------------


def _train_shard_job(args: tuple[Path, int, int, int, int, WorldOptions]) -> int:
    import webdataset as wds

    path, seed, start, stop, image_size, world = args
    with atomic_path(path) as tmp, wds.TarWriter(str(tmp)) as sink:
        for index in range(start, stop):
            rng = sample_rng(seed, "train", index)
            scene = sample_scene(rng, with_texture=world.fine_texture)
            image = render_scene(scene, image_size, _noise_seed(seed + 1, "train", index))
            caption = caption_scene(rng, scene, concise=world.concise_captions)
            sink.write({"__key__": f"{index:09d}", "jpg": _jpeg(image), "txt": caption,
                        "json": _scene_json(scene)})
    return stop - start


def _zeroshot_class_job(args: tuple[Path, int, int, str, int, int, str, WorldOptions]) -> int:
    folder, seed, class_index, class_id, per_class, image_size, set_name, world = args
    variant = ZEROSHOT_VARIANTS.get(set_name, ZEROSHOT_VARIANTS["zeroshot"])  # probe-train/-test: photo style
    fixed = parse_class_id(variant.class_attributes, class_id)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(per_class):
        index = class_index * 1_000_000 + k
        scene = sample_class_scene(sample_rng(seed, set_name, index), fixed.get("colour"), fixed.get("shape"),
                                   sizes=variant.sizes, with_texture=world.fine_texture,
                                   texture=fixed.get("texture"))
        image = render_scene(scene, image_size, _noise_seed(seed + 1, set_name, index), style=variant.style)
        (folder / f"{class_id}_{k:05d}.jpg").write_bytes(_jpeg(image))
    return per_class


def _retrieval_job(args: tuple[Path, int, int, int, int, WorldOptions]) -> list[dict[str, Any]]:
    folder, seed, index, captions_per_image, image_size, world = args
    rng = sample_rng(seed, "retrieval", index)
    scene = sample_scene(rng, with_texture=world.fine_texture)
    image = render_scene(scene, image_size, _noise_seed(seed + 1, "retrieval", index))
    filename = f"{index:06d}.jpg"
    (folder / filename).write_bytes(_jpeg(image))
    captions: list[str] = []
    for _ in range(20 * captions_per_image):  # paraphrases: distinct where the grammar allows
        caption = caption_scene(rng, scene, concise=world.concise_captions)
        if caption not in captions:
            captions.append(caption)
        if len(captions) == captions_per_image:
            break
    while len(captions) < captions_per_image:
        captions.append(caption_scene(rng, scene, concise=world.concise_captions))
    return [{"filename": filename, "index": index, "captions": captions}]


# --- drivers ---------------------------------------------------------------------------------------------------


def _run(job: Callable, tasks: list, workers: int, desc: str, total: int, weight: Callable[[Any], int]):
    from tqdm import tqdm

    results = []
    with tqdm(total=total, desc=desc, unit="img", leave=False) as bar:
        if workers <= 1:
            for t in tasks:
                out = job(t)
                results.append(out)
                bar.update(weight(out))
        else:
            # spawn, not fork: the caller may have torch (and its threads) loaded.
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for out in pool.imap(job, tasks):
                    results.append(out)
                    bar.update(weight(out))
    return results


def _write_manifest(folder: Path, kind: str, config: SynthConfig, extra: dict[str, Any] | None = None) -> None:
    settings = {k: v for k, v in dataclasses.asdict(config).items()
                if k not in _LEFT_OUT_AT_DEFAULT or v != getattr(SynthConfig, k)}
    manifest = {"generator": "reclip-eval shapes", "version": GENERATOR_VERSION, "set": kind, **settings,
                **(extra or {})}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def write_train_shards(out: Path, config: SynthConfig, workers: int = 1) -> Path:
    target = Path(out) / "shapes-train"
    with atomic_dir(target) as tmp:
        n, per = config.train_samples, config.samples_per_shard
        tasks = [(tmp / f"shapes-train-{i:06d}.tar", config.seed, start, min(start + per, n), config.image_size,
                  config.world) for i, start in enumerate(range(0, n, per))]
        _run(_train_shard_job, tasks, workers, "train shards", n, weight=lambda c: c)
        _write_manifest(tmp, "train", config, {"shards": len(tasks)})
    return target


def write_zeroshot_set(out: Path, config: SynthConfig, workers: int = 1, set_name: str = "zeroshot") -> Path:
    variant = ZEROSHOT_VARIANTS[set_name]
    target = Path(out) / variant.folder
    classes = variant.classes()
    config = _effective(config, set_name)
    with atomic_dir(target) as tmp:
        tasks = [(tmp / "val" / cid, config.seed, i, cid, config.zeroshot_per_class, config.image_size, set_name,
                  config.world) for i, (cid, _) in enumerate(classes)]
        total = len(tasks) * config.zeroshot_per_class
        _run(_zeroshot_class_job, tasks, workers, f"{set_name} set", total, weight=lambda c: c)
        _write_manifest(tmp, set_name, config, {"classes": len(tasks), "style": variant.style})
    return target


def write_probe_set(out: Path, config: SynthConfig, workers: int = 1) -> Path:
    """Two independent draws of the zero-shot distribution: train/ to fit a linear probe, test/ to score it."""
    target = Path(out) / "shapes-probe"
    with atomic_dir(target) as tmp:
        tasks = [(tmp / split / cid, config.seed, i, cid, config.zeroshot_per_class, config.image_size,
                  f"probe-{split}", config.world)
                 for split in ("train", "test") for i, (cid, _) in enumerate(class_names())]
        total = len(tasks) * config.zeroshot_per_class
        _run(_zeroshot_class_job, tasks, workers, "probe set", total, weight=lambda c: c)
        _write_manifest(tmp, "probe", config, {"classes": len(class_names())})
    return target


def write_retrieval_set(out: Path, config: SynthConfig, workers: int = 1) -> Path:
    target = Path(out) / "shapes-retrieval"
    with atomic_dir(target) as tmp:
        (tmp / "images").mkdir()
        tasks = [(tmp / "images", config.seed, i, config.captions_per_image, config.image_size, config.world)
                 for i in range(config.retrieval_images)]
        rows = [row for chunk in _run(_retrieval_job, tasks, workers, "retrieval set", len(tasks), len)
                for row in chunk]
        (tmp / "dataset_shapes.json").write_text(json.dumps(karpathy_json(rows), indent=1))
        _write_manifest(tmp, "retrieval", config)
    return target


def karpathy_json(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Rows of (filename, captions) in the layout of Karpathy's dataset_flickr30k.json (all in the test split)."""
    images, sentid = [], 0
    for imgid, row in enumerate(rows):
        sentences = []
        for raw in row["captions"]:
            tokens = raw.rstrip(".").replace(",", "").split()
            sentences.append({"tokens": tokens, "raw": raw, "imgid": imgid, "sentid": sentid})
            sentid += 1
        images.append({"filepath": "images", "filename": row["filename"], "imgid": imgid, "split": "test",
                       "sentids": [s["sentid"] for s in sentences], "sentences": sentences})
    return {"dataset": "shapes", "images": images}


def write_lvis_set(out: Path, config: SynthConfig, workers: int = 1) -> Path:
    """The LVIS-v1-format detection set (see lvis.py; imported here lazily because it builds on this module)."""
    from reclip_eval.data.synth.lvis import write_lvis_set as write

    return write(out, config, workers)


Writer = Callable[[Path, SynthConfig, int], Path]  # (data root, settings, workers) -> the set's folder
# The synthetic sets by name: what `data synth --sets` and a task's `synth_set` can name.
WRITERS: Registry[Writer] = Registry("synthetic set")
WRITERS.register("train")(write_train_shards)
for _name in ZEROSHOT_VARIANTS:
    WRITERS.register(_name)(functools.partial(write_zeroshot_set, set_name=_name))
WRITERS.register("probe")(write_probe_set)
WRITERS.register("retrieval")(write_retrieval_set)
WRITERS.register("lvis")(write_lvis_set)


def synthesize(out: str | Path, config: SynthConfig, sets: Iterable[str] = SETS, workers: int = 1) -> list[Path]:
    """Write the requested sets under `out`; returns their folders."""
    unknown = [s for s in sets if s not in WRITERS.names()]
    if unknown:
        raise DataError(f"unknown synthetic set(s) {', '.join(map(repr, unknown))}; expected some of "
                        f"{', '.join(WRITERS)}")
    return [WRITERS.get(s)(Path(out), config, workers) for s in sets]


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def made_by_current_generator(folder: str | Path, config: SynthConfig | None = None) -> bool:
    """False for a folder another generator version wrote (same settings would now draw other data), or, given
    the settings a set is wanted with, one made for another world (world.WorldOptions: another texture or caption
    grammar is other data, not more or fewer images of the same). A folder without a manifest is the user's."""
    return not world_differences(folder, config)


def world_differences(folder: str | Path, config: SynthConfig | None = None) -> list[str]:
    """What makes the set in `folder` other data than `config` would write (made_by_current_generator): its
    generator version, or each world setting with the folder's value and the wanted one; [] when none differs."""
    manifest = read_manifest(folder)
    if manifest is None:
        return []
    if manifest.get("version") != GENERATOR_VERSION:
        return [f"generator version {manifest.get('version')} there, this is version {GENERATOR_VERSION}"]
    if config is None:
        return []
    wanted = _effective(config, manifest.get("set"))
    return [f"{name} {json.dumps(manifest.get(name, getattr(SynthConfig, name)))} there, "
            f"{json.dumps(getattr(wanted, name))} wanted" for name in WORLD_SETTINGS
            if manifest.get(name, getattr(SynthConfig, name)) != getattr(wanted, name)]


def _effective(config: SynthConfig, set_name: str | None) -> SynthConfig:
    """The settings a set is written with: the fine-texture task's set turns the texture on whatever was asked."""
    variant = ZEROSHOT_VARIANTS.get(set_name or "")
    return dataclasses.replace(config, fine_texture=True) if variant and variant.needs_texture else config


__all__ = ["COLOURS", "SETS", "SHAPES", "ZEROSHOT_VARIANTS", "SynthConfig", "karpathy_json", "read_manifest",
           "synthesize"]
