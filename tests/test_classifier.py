"""The shared class-embedding builder (reclip_eval/classifier/): prompt ensembling, the template reader, the prompts
fingerprint and the class-embedding cache, used alike by zero-shot classification and the detector's vocabulary."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F

from reclip_eval.classifier.cache import cache_key, cached_class_embeddings
from reclip_eval.classifier.ensemble import ensemble_prompts
from reclip_eval.classifier.templates import prompts_record, read_templates
from reclip_eval.detect.vocabulary import Category, build_text_embeddings, encode_phrases, read_templates_file
from reclip_eval.errors import DataError
from reclip_eval.models import CLIP, build_config


class _RecordingEncoder:
    """A text encoder whose embedding of a text is a fixed random unit vector, recording what it was asked."""

    def __init__(self, dim: int = 8):
        self.dim = dim
        self.calls: list[list[str]] = []

    def embed(self, text: str) -> torch.Tensor:
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        return F.normalize(torch.randn(self.dim, generator=torch.Generator().manual_seed(seed)), dim=-1)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        return torch.stack([self.embed(t) for t in texts])


def test_ensemble_averages_each_names_prompts_then_normalises():
    encode = _RecordingEncoder()
    names, templates = ["cat", "red dog", "bird"], ["a photo of a {}.", "{}", "a sketch of the {}"]
    classifier = ensemble_prompts(encode, names, templates)
    assert encode.calls == [[t.format(n) for n in names for t in templates]]  # one batch, class-major
    assert classifier.shape == (3, encode.dim)
    for row, name in zip(classifier, names, strict=True):
        by_hand = F.normalize(torch.stack([encode.embed(t.format(name)) for t in templates]).mean(0), dim=-1)
        assert torch.allclose(row, by_hand, atol=1e-6)
    # The rows belong to their names: swapping two names swaps the rows.
    swapped = ensemble_prompts(encode, ["bird", "red dog", "cat"], templates)
    assert torch.allclose(swapped[0], classifier[2], atol=1e-6) and not torch.allclose(swapped[0], classifier[0])


def test_detector_vocabulary_is_the_shared_ensemble_averaged_over_synonyms():
    torch.manual_seed(0)
    clip = CLIP(build_config("tiny")).eval()
    templates = ["a photo of a {}.", "{}."]
    categories = [Category(1, "red_circle", ("red disc", "red_disk"), "f"), Category(2, "blue_square", (), "r")]
    per_phrase = ensemble_prompts(lambda texts: encode_phrases(clip, texts),
                                  ["red circle", "red disc", "red disk", "blue square"], templates)
    expected = F.normalize(torch.stack([per_phrase[:3].mean(0), per_phrase[3]]), dim=-1)
    assert torch.equal(build_text_embeddings(clip, categories, templates), expected)


def test_one_template_reader_for_tasks_and_detector_recipes(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("  a photo of a {}.\n\n{}\n", encoding="utf-8")
    assert read_templates(good) == ["a photo of a {}.", "{}"]
    assert read_templates_file(str(good)) == read_templates(good)  # absolute paths are read as they are
    bad = tmp_path / "bad.txt"
    bad.write_text("a photo of a {}.\nno slot\n{} and {}\n", encoding="utf-8")
    for read in (read_templates, lambda p: read_templates_file(str(p))):
        with pytest.raises(DataError, match=r"line 2: 'no slot'\n  line 3: '\{\} and \{\}'"):
            read(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="no templates"):
        read_templates(empty)
    with pytest.raises(DataError, match=r"prompt template file not found$"):
        read_templates(tmp_path / "missing.txt")
    # A recipe's relative path is read under tasks/, and the error says so.
    with pytest.raises(DataError, match=r"tasks/missing\.txt: .*not found \(classifier\.templates is relative to"):
        read_templates_file("missing.txt")


def test_prompts_record_hashes_templates_and_class_names_in_order():
    record = prompts_record(["a {}.", "the {}"], ["cat", "dog"])
    assert record == {"templates": 2, "templates_sha256": hashlib.sha256(b"a {}.\nthe {}").hexdigest(),
                      "classnames_sha256": hashlib.sha256(b"cat\ndog").hexdigest()}
    assert prompts_record(["a {}.", "the {}"], ["dog", "cat"])["classnames_sha256"] != record["classnames_sha256"]


def test_cache_keys_keep_their_meaning():
    """The keys computed before the cache moved out of eval/ (reclip_eval/eval/class_cache.py): entries written by
    earlier versions stay valid, and zero-shot and detector entries stay apart."""
    text_config = {"pool": "eot", "context_length": 77}
    zeroshot = cache_key(weights_sha256="ab" * 32, text_config=text_config, templates=["a photo of a {}."],
                         class_names=["cat", "dog"], precision="fp32")
    detector = cache_key(weights_sha256="ab" * 32, text_config=text_config, templates=["a photo of a {}."],
                         class_names=[["red circle", "red disc"]], precision="torch.float32",
                         purpose="detector_vocabulary")
    assert zeroshot == "c62765ecdcdb1225a4c4d04bd523da3740b26e283445ec1267c4eaf50a0401ed"
    assert detector == "01de8b4f413c5f56e35a7a33f9ce4534ed7a66c4c97fc06046a261a46be697c3"
    assert cache_key(weights_sha256=None, text_config=text_config, templates=[], class_names=[],
                     precision="fp32") is None


def test_cache_computes_once_per_key_and_recomputes_a_damaged_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("RECLIP_CACHE", str(tmp_path))
    computed = []

    def compute() -> torch.Tensor:
        computed.append(1)
        return torch.full((2, 3), float(len(computed)))

    first = cached_class_embeddings("k" * 64, compute)
    assert torch.equal(cached_class_embeddings("k" * 64, compute), first) and len(computed) == 1
    (tmp_path / "class_embeddings" / f"{'k' * 64}.safetensors").write_bytes(b"not safetensors")
    assert torch.equal(cached_class_embeddings("k" * 64, compute), torch.full((2, 3), 2.0))
    cached_class_embeddings(None, compute)  # no fingerprint: never cached, always computed
    cached_class_embeddings(None, compute)
    assert len(computed) == 4 and not (tmp_path / "class_embeddings" / "None.safetensors").exists()
