"""The synthetic world: deterministic, multiprocess-invariant, and written in the real formats."""

import hashlib
import json

import webdataset as wds

from reclip_eval.data.imagefolder import read_class_list
from reclip_eval.data.retrieval_files import read_karpathy_json
from reclip_eval.data.synth.export import SynthConfig, read_manifest, synthesize
from reclip_eval.data.synth.world import class_names
from reclip_eval.paths import data_folder


def _digest_tree(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "synth.json"):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes() if path.suffix != ".tar" else _tar_members(path))
    return digest.hexdigest()


def _tar_members(path):
    # Tar headers carry mtimes; compare member names and contents.
    import tarfile

    with tarfile.open(path) as tar:
        return b"".join(m.name.encode() + tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())


def test_same_seed_same_bytes_for_any_worker_count(tmp_path):
    config = SynthConfig(seed=5, image_size=48, train_samples=40, samples_per_shard=20, zeroshot_per_class=1,
                         retrieval_images=6)
    synthesize(tmp_path / "w1", config, workers=1)
    synthesize(tmp_path / "w2", config, workers=2)
    assert _digest_tree(tmp_path / "w1") == _digest_tree(tmp_path / "w2")
    synthesize(tmp_path / "s6", SynthConfig(**{**config.__dict__, "seed": 6}), sets=["zeroshot"], workers=1)
    assert _digest_tree(tmp_path / "w1" / "shapes-zeroshot") != _digest_tree(tmp_path / "s6" / "shapes-zeroshot")


def test_training_shards_are_webdataset(synth_dir):
    shards = sorted((synth_dir / "shapes-train").glob("*.tar"))
    assert len(shards) == 2
    samples = list(wds.WebDataset([str(s) for s in shards], shardshuffle=False).decode("pil"))
    assert len(samples) == 600
    first = samples[0]
    assert first["__key__"] == "000000000" and first["jpg"].size == (64, 64)
    assert isinstance(first["txt"], str) and first["txt"].endswith(".")
    scene = first["json"]
    assert 1 <= len(scene["objects"]) <= 4
    assert all(o["colour"] in first["txt"] for o in scene["objects"])  # every object's colour is captioned
    assert read_manifest(synth_dir / "shapes-train")["train_samples"] == 600


def test_zeroshot_set_in_imagenet_layout_matches_task_class_list(synth_dir):
    classes = read_class_list(data_folder("tasks") / "shapes" / "classes.tsv")
    assert list(zip(classes.ids, classes.names, strict=True)) == class_names()
    folders = sorted(p.name for p in (synth_dir / "shapes-zeroshot" / "val").iterdir())
    assert folders == sorted(classes.ids)
    assert all(len(list((synth_dir / "shapes-zeroshot" / "val" / f).glob("*.jpg"))) == 3 for f in folders)


def test_retrieval_set_in_karpathy_format(synth_dir):
    raw = json.loads((synth_dir / "shapes-retrieval" / "dataset_shapes.json").read_text())
    image = raw["images"][0]
    assert set(image) >= {"filename", "filepath", "imgid", "split", "sentences", "sentids"}
    assert set(image["sentences"][0]) >= {"raw", "tokens", "imgid", "sentid"}
    data = read_karpathy_json(synth_dir / "shapes-retrieval" / "dataset_shapes.json", synth_dir / "shapes-retrieval")
    assert len(data.image_paths) == 30 and len(data.captions) == 150
    assert all(p.is_file() for p in data.image_paths)
    per_image = [data.captions[i * 5:(i + 1) * 5] for i in range(30)]
    assert sum(len(set(c)) == 5 for c in per_image) >= 25  # paraphrases, not copies


def test_domain_shift_twins(tmp_path):
    from reclip_eval.data.synth.world import shape_class_names

    config = SynthConfig(seed=1, image_size=48, zeroshot_per_class=1)
    synthesize(tmp_path, config, sets=["zeroshot", "zeroshot-v2", "zeroshot-sketch", "zeroshot-r", "zeroshot-a"])
    sketch_classes = read_class_list(data_folder("tasks") / "shapes" / "shape_classes.tsv")
    assert list(zip(sketch_classes.ids, sketch_classes.names, strict=True)) == shape_class_names()
    assert sorted(p.name for p in (tmp_path / "shapes-sketch" / "val").iterdir()) == sorted(sketch_classes.ids)
    for folder in ("shapes-v2", "shapes-r", "shapes-a"):
        assert len(list((tmp_path / folder / "val").iterdir())) == 36
    # v2 is a fresh draw: same classes, other images, even with the same seed.
    assert _digest_tree(tmp_path / "shapes-v2" / "val") != _digest_tree(tmp_path / "shapes-zeroshot" / "val")
    # Sketches are grayscale.
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(next((tmp_path / "shapes-sketch" / "val" / "star").glob("*.jpg"))), np.int16)
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() <= 3


def test_preresize_keeps_every_sample_and_shrinks_images(synth_dir, tmp_path):
    from reclip_eval.data.preresize import PreresizeConfig, preresize_shards
    from reclip_eval.data.shards import list_shards

    shards = list_shards("shapes-train", synth_dir)
    summary = preresize_shards(shards, tmp_path / "small", PreresizeConfig(short_side=40), workers=2)
    assert summary["samples"] == 600 and summary["shards"] == 2
    before = list(wds.WebDataset(shards, shardshuffle=False).decode("pil"))
    after = list(wds.WebDataset(list_shards(str(tmp_path / "small"), None), shardshuffle=False).decode("pil"))
    assert [s["__key__"] for s in after] == [s["__key__"] for s in before]
    assert [s["txt"] for s in after] == [s["txt"] for s in before] and after[0]["json"] == before[0]["json"]
    assert after[0]["jpg"].size == (40, 40) and before[0]["jpg"].size == (64, 64)
    # Never upscales: asking for a larger side keeps the size.
    preresize_shards(shards[:1], tmp_path / "same", PreresizeConfig(short_side=500))
    first = next(iter(wds.WebDataset(str(tmp_path / "same" / "shapes-train-000000.tar"), shardshuffle=False)
                      .decode("pil")))
    assert first["jpg"].size == (64, 64)


# sha256 (first 16 hex digits) of every set's files, manifest and tar members included, as the code before the
# fine texture (issue 14) wrote them: the original world must stay byte for byte what the committed results
# measured (their data fingerprints and manifests). Pillow's JPEG encoder is part of it: a Pillow that encodes
# otherwise changes the committed results' fingerprints too, and should fail here first.
ORIGINAL_WORLD = {
    SynthConfig(seed=5, image_size=48, train_samples=40, samples_per_shard=20, zeroshot_per_class=1,
                retrieval_images=6, lvis_train_images=4, lvis_val_images=3): {
        "shapes-a": "18c38de7c8553378", "shapes-lvis": "50d8886245c6bb28", "shapes-probe": "c93350b76cea2a72",
        "shapes-r": "20a7a0837cf1259c", "shapes-retrieval": "43074a113cd66816", "shapes-sketch": "352f8a7da3bb3235",
        "shapes-train": "afb489b0abbb0648", "shapes-v2": "4ca01e44c609f44f", "shapes-zeroshot": "d1c0f2f6d07ad491"},
    SynthConfig(train_samples=30, samples_per_shard=15, zeroshot_per_class=1, retrieval_images=5,
                lvis_train_images=3, lvis_val_images=2): {
        "shapes-a": "52a5e1c8c8f27fab", "shapes-lvis": "c1f6490f0115ac25", "shapes-probe": "9d20673b232f4c99",
        "shapes-r": "3c892dfd3ee0d967", "shapes-retrieval": "c208e62f6712f4ae", "shapes-sketch": "0d8f6c812c7b1c5b",
        "shapes-train": "70bd5806920b577b", "shapes-v2": "e7c06f0b9b41f6e6", "shapes-zeroshot": "08e4f3774ae28a58"},
}


def _digest_with_manifest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes() if path.suffix != ".tar" else _tar_members(path))
    return digest.hexdigest()[:16]


def test_original_world_is_byte_for_byte_as_before(tmp_path):
    from reclip_eval.data.synth.export import SETS

    for n, (config, expected) in enumerate(ORIGINAL_WORLD.items()):
        synthesize(tmp_path / str(n), config, sets=[*SETS, "lvis"])
        assert {p.name: _digest_with_manifest(p) for p in (tmp_path / str(n)).iterdir()} == expected, config


def _square(texture, colour="red"):
    from reclip_eval.data.synth.world import Scene, ShapeSpec

    return Scene((ShapeSpec("square", colour, "large", "plain", "center", 0.5, 0.5, 0.0, texture),), (220, 220, 220))


def _interior(pixels):
    """The middle of the large centred square (radius 0.3 of the side, rotated 45 degrees: a diamond)."""
    side = pixels.shape[0]
    lo, hi = round(side * 0.42), round(side * 0.58)
    return pixels[lo:hi, lo:hi].reshape(-1, pixels.shape[-1])


def test_fine_texture_keeps_the_mean_and_shows_only_at_full_size():
    import numpy as np
    import torch

    from reclip_eval.data.synth.render import render_scene
    from reclip_eval.data.synth.world import COLOURS, TEXTURES
    from reclip_eval.data.transforms import image_transform
    from reclip_eval.models.config import PreprocessConfig

    full = SynthConfig.image_size  # the world's 128 px; the miniature trains at 64 px at most
    seen_at = {size: image_transform(size, PreprocessConfig()) for size in (full // 2, full // 4)}
    for colour in COLOURS:  # orange and yellow have channels near 255 / 0: the tones must not clip
        images = {t: render_scene(_square(t, colour), full, noise_seed=3) for t in TEXTURES}
        region = {t: _interior(np.asarray(image, np.float32)) for t, image in images.items()}
        small = {size: {t: _interior(transform(image).permute(1, 2, 0).numpy()) for t, image in images.items()}
                 for size, transform in seen_at.items()}
        for texture in ("lined", "checked"):
            assert np.abs(region[texture].mean(0) - region["smooth"].mean(0)).max() < 0.5, (colour, texture)
            # Rendered size: the tones are far apart (the smooth fill's spread is the render noise alone).
            assert region[texture].std(0).max() > 5 * region["smooth"].std(0).max(), (colour, texture)
            # The miniature's full 64 px: a 2 px period, still there (normalised units; the render noise is ~0.05).
            assert torch.tensor(small[full // 2][texture] - small[full // 2]["smooth"]).abs().max() > 0.2
            # 32 px: the period is one pixel, averaged to the plain fill.
            difference = torch.tensor(small[full // 4][texture] - small[full // 4]["smooth"]).abs().max()
            assert difference < 0.02, (colour, texture)


def test_fine_texture_is_opt_in_and_named(tmp_path):
    from reclip_eval.data.synth.world import TEXTURES

    plain = SynthConfig(seed=2, image_size=64, train_samples=20, samples_per_shard=20, zeroshot_per_class=1)
    textured = SynthConfig(**{**plain.__dict__, "fine_texture": True})
    synthesize(tmp_path / "plain", plain, sets=["train", "zeroshot"])
    synthesize(tmp_path / "textured", textured, sets=["train", "zeroshot"])
    assert "fine_texture" not in read_manifest(tmp_path / "plain" / "shapes-train")
    assert read_manifest(tmp_path / "textured" / "shapes-zeroshot")["fine_texture"] is True
    samples = list(wds.WebDataset(str(tmp_path / "textured" / "shapes-train" / "shapes-train-000000.tar"),
                                  shardshuffle=False).decode())
    textures = [o["texture"] for s in samples for o in s["json"]["objects"]]
    assert set(textures) == set(TEXTURES)
    named = {"lined": ("lined", "ribbed"), "checked": ("checked", "checkered")}
    for sample in samples:
        for obj in sample["json"]["objects"]:
            if obj["texture"] in named:  # captions name every object, so its texture word is there
                assert any(word in sample["txt"] for word in named[obj["texture"]]), sample["txt"]
    plain_scenes = [json.loads(s["json"]) for s in wds.WebDataset(
        str(tmp_path / "plain" / "shapes-train" / "shapes-train-000000.tar"), shardshuffle=False)]
    assert all("texture" not in o for scene in plain_scenes for o in scene["objects"])
    # The texture is drawn after an object's other attributes: the first object is the original one, textured.
    first = samples[0]["json"]["objects"][0]
    assert {k: v for k, v in first.items() if k != "texture"} == plain_scenes[0]["objects"][0]


def test_texture_task_set_fixes_shape_and_texture_and_turns_the_texture_on(tmp_path):
    from reclip_eval.data.synth.export import SETS, ZEROSHOT_VARIANTS
    from reclip_eval.data.synth.world import SHAPES, TEXTURES, sample_class_scene, sample_rng, texture_class_names

    classes = read_class_list(data_folder("tasks") / "shapes" / "texture_classes.tsv")
    assert list(zip(classes.ids, classes.names, strict=True)) == texture_class_names()
    assert len(classes.ids) == len(SHAPES) * len(TEXTURES) == 18
    assert ("circle_lined", "lined circle") in texture_class_names()
    assert "zeroshot-texture" not in SETS  # on request: the default sets are the original world's
    # Texture on even when the settings leave it off: the classes need it.
    config = SynthConfig(seed=1, image_size=32, zeroshot_per_class=2)
    folder = synthesize(tmp_path, config, sets=["zeroshot-texture"])[0]
    assert folder == tmp_path / "shapes-texture"
    assert sorted(p.name for p in (folder / "val").iterdir()) == sorted(classes.ids)
    assert all(len(list((folder / "val" / c).glob("*.jpg"))) == 2 for c in classes.ids)
    manifest = read_manifest(folder)
    assert manifest["fine_texture"] is True and manifest["set"] == "zeroshot-texture" and manifest["classes"] == 18
    # Every image's object has its class's shape and texture (the draws the writer renders), colours vary.
    variant = ZEROSHOT_VARIANTS["zeroshot-texture"]
    colours = set()
    for class_index, class_id in enumerate(c for c, _ in variant.classes()):
        shape, texture = class_id.split("_")
        for k in range(config.zeroshot_per_class):
            rng = sample_rng(config.seed, "zeroshot-texture", class_index * 1_000_000 + k)
            scene = sample_class_scene(rng, None, shape, with_texture=True, texture=texture)
            (obj,) = scene.objects
            assert (obj.shape, obj.texture) == (shape, texture)
            colours.add(obj.colour)
    assert len(colours) > 1


def test_texture_task_images_are_its_class_scenes(tmp_path):
    """The written images are the renders of those class scenes (so the check above is of what is on disk)."""
    import numpy as np
    from PIL import Image

    from reclip_eval.data.synth.export import _noise_seed
    from reclip_eval.data.synth.render import render_scene
    from reclip_eval.data.synth.world import sample_class_scene, sample_rng

    config = SynthConfig(seed=3, zeroshot_per_class=1)  # full size: the texture shows
    folder = synthesize(tmp_path, config, sets=["zeroshot-texture"])[0]
    index = 4 * 1_000_000  # class 4: square_lined
    written = np.asarray(Image.open(folder / "val" / "square_lined" / "square_lined_00000.jpg"), np.float32)

    def error(texture):
        scene = sample_class_scene(sample_rng(3, "zeroshot-texture", index), None, "square", with_texture=True,
                                   texture=texture)
        image = render_scene(scene, config.image_size, _noise_seed(4, "zeroshot-texture", index))
        return np.abs(written - np.asarray(image, np.float32)).mean()

    # The JPEG error alone against its own render; the other textures add theirs (the object is small here).
    assert error("lined") < 0.9 * min(error("smooth"), error("checked"))


def test_texture_task_validates_and_turns_the_texture_on():
    from reclip_eval.eval.tasks import load_task

    task = load_task("shapes-texture")
    assert task.synth_set == "zeroshot-texture" and task.synth.fine_texture and task.twin_of is None
    assert task.synth.image_size == SynthConfig.image_size  # the world's full size
    classes = read_class_list(task.resource(task.classes))
    assert len(classes.ids) == 18 and "circle_lined" in classes.ids


def test_demo_model_evaluates_on_a_tiny_texture_set(tmp_path):
    import dataclasses

    from reclip_eval.eval.runner import EvalOptions, evaluate
    from reclip_eval.eval.tasks import load_task
    from reclip_eval.zoo.resolve import load_adapter

    task = load_task("shapes-texture")
    synthesize(tmp_path, dataclasses.replace(task.synth, zeroshot_per_class=2), sets=[task.synth_set])
    results = evaluate(load_adapter("reclip-demo"), task, EvalOptions(data_dir=tmp_path, workers=0))
    assert results["counts"]["images_evaluated"] == 36 and results["counts"]["images_skipped"] == 0
    assert results["task"]["synthetic_manifest"]["fine_texture"] is True
    metrics = {"top1", "top5", "mean_per_class_recall"}
    assert metrics <= set(results["metrics"]) and all(0 <= results["metrics"][m] <= 1 for m in metrics), results


def test_concise_captions_name_texture_colour_and_shape_and_nothing_else():
    import numpy as np

    from reclip_eval.data.synth.captions import _PATTERN_WORDS, _POSITION, _SIZE_WORDS, caption_scene
    from reclip_eval.data.synth.world import sample_rng, sample_scene

    named = {"lined": ("lined", "ribbed"), "checked": ("checked", "checkered")}
    easy_words = {w for words in (*_SIZE_WORDS.values(), *_PATTERN_WORDS.values()) for w in words if w}
    easy_phrases = {p for phrases in _POSITION.values() for p in phrases}
    full_named_position = 0
    for index in range(300):
        scene = sample_scene(sample_rng(5, "train", index), with_texture=True)
        caption = caption_scene(np.random.default_rng(index), scene, concise=True)
        for obj in scene.objects:
            assert obj.colour in caption, caption
            if obj.texture in named:
                assert any(word in caption for word in named[obj.texture]), caption
        words = caption.replace(" on a plain background", "").rstrip(".").replace(",", "").split()  # a template
        assert not easy_words & set(words), caption
        assert not any(phrase in caption for phrase in easy_phrases), caption
        full = caption_scene(np.random.default_rng(index), scene)
        full_named_position += any(phrase in full for phrase in easy_phrases)
    assert full_named_position > 150  # the full grammar names positions (the golden hashes pin it byte for byte)


def test_concise_captions_are_opt_in_and_in_the_manifest(tmp_path):
    plain = SynthConfig(seed=2, image_size=32, train_samples=30, samples_per_shard=30, fine_texture=True)
    concise = SynthConfig(**{**plain.__dict__, "concise_captions": True})
    synthesize(tmp_path / "full", plain, sets=["train"])
    synthesize(tmp_path / "concise", concise, sets=["train"])
    assert "concise_captions" not in read_manifest(tmp_path / "full" / "shapes-train")
    assert read_manifest(tmp_path / "concise" / "shapes-train")["concise_captions"] is True

    def captions(root):
        return [s["txt"].decode() for s in wds.WebDataset(str(root / "shapes-train" / "shapes-train-000000.tar"),
                                                          shardshuffle=False)]

    full, short = captions(tmp_path / "full"), captions(tmp_path / "concise")
    assert sum(map(len, short)) < 0.8 * sum(map(len, full))  # the same scenes, fewer words


def test_a_set_made_for_another_world_is_regenerated_not_used(tmp_path):
    """A texture or caption grammar is another world: its set is stale for the task (as another generator
    version's is), unlike a set with more images per class, which is used as it is."""
    import dataclasses

    from reclip_eval.data.synth.export import made_by_current_generator
    from reclip_eval.eval.tasks import load_task, locate_task_data

    task = load_task("shapes-zeroshot")
    original = dataclasses.replace(task.synth, image_size=32, zeroshot_per_class=1, fine_texture=False,
                                   concise_captions=False)
    folder = synthesize(tmp_path, original, sets=["zeroshot"])[0]
    other_world = dataclasses.replace(original, fine_texture=True, concise_captions=True)
    assert made_by_current_generator(folder, original) and made_by_current_generator(folder)
    assert not made_by_current_generator(folder, other_world)
    assert made_by_current_generator(folder, dataclasses.replace(original, zeroshot_per_class=5))
    # The texture task's set has the texture on whatever its settings say: asking without it is the same world.
    texture_set = synthesize(tmp_path, original, sets=["zeroshot-texture"])[0]
    assert made_by_current_generator(texture_set, original)

    located, _ = locate_task_data(dataclasses.replace(task, synth=other_world), tmp_path)
    assert located == folder and read_manifest(folder)["fine_texture"] is True  # regenerated in place


def test_trainer_regenerates_shards_made_for_another_world(tmp_path):
    import dataclasses

    from reclip_eval.train.loop import prepare_shards
    from reclip_eval.train.recipe import load_recipe

    recipe = load_recipe("tiny-shapes")
    synth = dataclasses.replace(recipe.data.synth, train_samples=8, samples_per_shard=8, image_size=32,
                                fine_texture=False, concise_captions=False)  # the original world
    original = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, synth=synth))
    prepare_shards(original, tmp_path, workers=1)
    assert "concise_captions" not in read_manifest(tmp_path / "shapes-train")
    concise = dataclasses.replace(synth, fine_texture=True, concise_captions=True)
    prepare_shards(dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, synth=concise)), tmp_path, 1)
    assert read_manifest(tmp_path / "shapes-train")["concise_captions"] is True


def test_every_synthetic_task_says_how_to_make_its_own_set_by_hand():
    """A task's get_data command asks `data synth` for the very set the task generates (world, seed, counts)."""
    import re
    import shlex

    from reclip_eval.cli.data_cmd import add_parser, synth_config
    from reclip_eval.data.synth.export import _effective
    from reclip_eval.eval.tasks import list_tasks

    checked = 0
    for task in list_tasks():
        name = task.name
        if task.synth is None:
            continue
        command = re.search(r"`reclip-eval data (synth [^`]*)`", task.get_data).group(1)
        args = add_parser().parse_args(shlex.split(command.replace("DIR", "/tmp/x")))
        assert args.sets == task.synth_set, name
        asked, wanted = _effective(synth_config(args), task.synth_set), _effective(task.synth, task.synth_set)
        assert asked == wanted, f"{name}: get_data makes {asked}, the task generates {wanted}"
        checked += 1
    assert checked >= 8
