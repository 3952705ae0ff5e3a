"""A model family whose encoders use no torch plugs into evaluation: an adapter computing its embeddings with numpy
alone (a fixed random projection of the pixels, hashed words and word pairs for texts) gets, through `evaluate`, the
metrics that the same computation done by hand gives. The proof that a flax (or any other) backend needs only to
implement ModelAdapter."""

import dataclasses
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reclip_eval.classifier.templates import read_templates
from reclip_eval.data.imagefolder import read_class_list
from reclip_eval.data.synth.export import synthesize
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task
from reclip_eval.paths import cache_dir
from reclip_eval.zoo.adapter import ModelAdapter

SIZE, DIM = 16, 256


def _pixels(image: Image.Image):
    array = np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32) / 255.0
    # The evaluation DataLoader's collate stacks tensors (data/images.py): the only torch this family meets.
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def _normalised(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class NumpyAdapter(ModelAdapter):
    model_id = "numpy-projection"
    image_size = SIZE

    def __init__(self):
        self.projection = np.random.default_rng(0).standard_normal((3 * SIZE * SIZE, DIM)).astype(np.float32)
        self.transform = _pixels
        self.encoded_images = 0

    def encode_images(self, pixels) -> np.ndarray:
        flat = np.asarray(pixels, dtype=np.float32).reshape(len(pixels), -1)
        self.encoded_images += len(flat)
        return _normalised(flat @ self.projection)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        counts = np.zeros((len(texts), DIM), dtype=np.float32)
        counts[:, 0] = 1.0  # never a zero vector
        for row, text in enumerate(texts):
            words = text.lower().replace(".", " ").replace(",", " ").split()
            for term in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                counts[row, 1 + zlib.crc32(term.encode()) % (DIM - 1)] += 1.0
        return _normalised(counts)

    def describe(self):
        return {"id": self.model_id, "family": "numpy", "weights": {"sha256": "numpy-projection-seed-0"},
                "image_size": SIZE, "preprocess": {"resize": "bilinear to 16x16"}, "tokenizer": {"name": "words"}}


def _distinct_per_row(scores: np.ndarray) -> bool:
    """No exact ties, so top-k is the same whatever breaks them."""
    return all(len(np.unique(row)) == len(row) for row in scores)


def _top_k_hits(scores: np.ndarray, positive: np.ndarray, k: int) -> np.ndarray:
    """Per row: whether any positive column is among the k highest scores."""
    top = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(positive, top, axis=1).any(axis=1)


def test_zeroshot_through_a_numpy_adapter_equals_the_computation_by_hand(synth_dir):
    task = load_task("shapes-zeroshot")
    adapter = NumpyAdapter()
    results = evaluate(adapter, task, EvalOptions(data_dir=synth_dir, batch_size=16, workers=0))
    assert adapter.encoded_images == results["counts"]["images_evaluated"] == 108

    classes = read_class_list(task.resource(task.classes))
    templates = read_templates(task.resource(task.templates))
    paths, labels = [], []
    for label, class_id in enumerate(classes.ids):
        found = sorted((synth_dir / "shapes-zeroshot" / "val" / class_id).glob("*.jpg"))
        paths += found
        labels += [label] * len(found)
    labels = np.asarray(labels)
    images = adapter.encode_images(np.stack([_pixels(Image.open(p)).numpy() for p in paths]))
    per_class = [adapter.encode_texts([t.format(name) for t in templates]).mean(axis=0) for name in classes.names]
    logits = images @ _normalised(np.stack(per_class)).T
    assert _distinct_per_row(logits)
    top1 = logits.argmax(axis=1)
    one_hot = labels[:, None] == np.arange(len(classes.ids))[None, :]
    expected = {"top1": float((top1 == labels).mean()), "top5": float(_top_k_hits(logits, one_hot, 5).mean()),
                "mean_per_class_recall": float(np.mean([(top1[labels == c] == c).mean()
                                                        for c in np.unique(labels)]))}
    # The metrics are float32 means: 1e-6 is rounding, far below one image (1/108).
    assert results["metrics"] == pytest.approx(expected, abs=1e-6)
    assert len(paths) == 108
    assert results["model"]["compute"]["image_gmacs"] is None  # this family has no FLOP counter
    assert (adapter.device, adapter.precision) == ("cpu", "fp32")  # placed by evaluate, from the options

    # The class embeddings were cached (the family has a weights fingerprint): a second run reads them back.
    assert len(list((Path(cache_dir()) / "class_embeddings").glob("*.safetensors"))) == 1
    again = evaluate(adapter, task, EvalOptions(data_dir=synth_dir, batch_size=16, workers=0))
    assert again["metrics"] == results["metrics"]


def test_retrieval_through_a_numpy_adapter_equals_the_computation_by_hand(tmp_path):
    # The original world's full captions: no two are the same text, so the scores have no exact ties and top-k is
    # the same whatever breaks them (the textured world's concise captions repeat).
    task = load_task("shapes-retrieval")
    synth = dataclasses.replace(task.synth, seed=3, image_size=64, retrieval_images=30, fine_texture=False,
                                concise_captions=False)
    synthesize(tmp_path, synth, sets=["retrieval"], workers=1)
    adapter = NumpyAdapter()
    results = evaluate(adapter, dataclasses.replace(task, synth=synth), EvalOptions(data_dir=tmp_path, batch_size=16,
                                                                                    workers=0))

    folder = tmp_path / "shapes-retrieval"
    entries = [e for e in json.loads((folder / "dataset_shapes.json").read_text())["images"] if e["split"] == "test"]
    pixels = np.stack([_pixels(Image.open(folder / e["filepath"] / e["filename"])).numpy() for e in entries])
    captions = [(row, s["raw"]) for row, e in enumerate(entries) for s in e["sentences"]]
    scores = adapter.encode_images(pixels) @ adapter.encode_texts([text for _, text in captions]).T
    caption_image = np.asarray([row for row, _ in captions])
    positive = caption_image[None, :] == np.arange(len(entries))[:, None]  # (images, captions)
    assert _distinct_per_row(scores) and _distinct_per_row(scores.T)
    expected = {}
    for k in (1, 5, 10):
        expected[f"i2t_R@{k}"] = float(_top_k_hits(scores, positive, k).mean())
    for k in (1, 5, 10):
        expected[f"t2i_R@{k}"] = float(_top_k_hits(scores.T, positive.T, k).mean())
    assert results["metrics"] == pytest.approx(expected, abs=1e-6)
    assert results["counts"]["captions_evaluated"] == len(captions)


def test_an_adapter_is_placed_by_evaluate_and_refuses_an_unknown_precision():
    adapter = NumpyAdapter()
    assert adapter.place("cuda:1", "bf16") is adapter and (adapter.device, adapter.precision) == ("cuda:1", "bf16")
    with pytest.raises(ValueError, match="numpy-projection: precision must be one of fp32, bf16, got 'fp16'"):
        adapter.place("cpu", "fp16")

