"""Exact speedups (issue 35): a text batch is cut at the last position that decides its rows' embeddings (the
padding after the pooled token of a causal tower is not computed), on by default, for every model kind where that
holds, and not where it does not (a tower without a causal mask pooling the last position, as big_vision's and
CLIPA's). Each kind's embeddings cut and uncut agree to 1e-6 and a tiny zero-shot evaluation's metrics are identical;
the sequence length the text tower saw is measured, so a cut that silently stopped happening fails here."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task
from reclip_eval.models import CLIP, build_config
from reclip_eval.models.config import TextConfig
from reclip_eval.paths import cache_dir
from reclip_eval.zoo.reclip import ReclipAdapter
from reclip_eval.zoo.resolve import load_adapter

from .test_peers_adapters import tiny_hf_clip, tiny_open_clip  # noqa: F401 - the tiny foreign models, as fixtures

# Prompts of different lengths, as a classifier's are: ImageNet-style templates x class names.
TEMPLATES = ["a photo of a {}.", "a bad photo of the {}.", "itap of my {}.", "a close-up photo of a {} in the wild."]
NAMES = ["cat", "great white shark", "sulphur-crested cockatoo", "x"]
PROMPTS = [t.format(n) for n in NAMES for t in TEMPLATES]


def _tiny_ours(pool: str, context_length: int = 77) -> ReclipAdapter:
    torch.manual_seed(0)
    config = build_config("tiny")
    text = TextConfig(**{**dataclasses.asdict(config.text), "pool": pool, "context_length": context_length})
    return ReclipAdapter(CLIP(dataclasses.replace(config, text=text)), f"tiny-{pool}")


def _seen_lengths(module: torch.nn.Module) -> list[int]:
    """The sequence lengths `module` (a text tower's token embedding) is called with, from now on."""
    seen: list[int] = []
    module.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[1]))
    return seen


def _longest_prompt(texts: list[str]) -> int:
    """Tokens of the longest text with its start and end tokens, by open_clip's CLIP BPE (every kind here uses it)."""
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    return max(len(tokenizer.encode(text)) for text in texts) + 2


def _cut_and_uncut(adapter, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    adapter.cut_text_padding = False
    try:
        uncut = adapter.encode_texts(texts)
    finally:
        del adapter.cut_text_padding  # back to the class's default: on
    return adapter.encode_texts(texts), uncut


def _token_embedding(adapter) -> torch.nn.Module:
    model = adapter.model
    if hasattr(model, "text_model"):  # transformers
        return model.text_model.embeddings.token_embedding
    return model.token_embedding if hasattr(model, "token_embedding") else model.text.token_embed


def _kind(request, name: str):
    """The adapter of a model kind whose text tower the cut holds for."""
    if name == "ours-eot":
        return load_adapter("reclip-demo")
    if name == "ours-mean":
        return _tiny_ours("mean")
    if name == "open_clip":
        _, _, _, folder, _ = request.getfixturevalue("tiny_open_clip")
        return load_adapter("openclip:reclip-test-tiny", checkpoint=str(folder / "weights.safetensors"))
    _, folder = request.getfixturevalue("tiny_hf_clip")
    return load_adapter(f"hf:{folder}")


@pytest.mark.parametrize("name", ["ours-eot", "ours-mean", "open_clip", "hf_transformers"])
def test_cut_text_batches_embed_as_uncut(request, name):
    adapter = _kind(request, name)
    tokens = adapter.tokenize(PROMPTS)
    seen = _seen_lengths(_token_embedding(adapter))
    cut, uncut = _cut_and_uncut(adapter, PROMPTS)
    assert seen == [tokens.shape[1], adapter.decisive_text_length(tokens)]
    assert seen[1] == _longest_prompt(PROMPTS) < seen[0]  # the padding is not computed
    np.testing.assert_allclose(cut, uncut, rtol=0, atol=1e-6)


def test_jax_backend_cuts_as_torch_does():
    adapter = load_adapter("reclip-demo", backend="jax")
    tokens = adapter._torch.tokenize(PROMPTS)
    seen: list[int] = []
    encode = adapter._encode_text
    adapter._encode_text = lambda params, batch: (seen.append(batch.shape[1]), encode(params, batch))[1]
    cut, uncut = _cut_and_uncut(adapter, PROMPTS)
    decisive = adapter._torch.decisive_text_length(tokens)
    assert seen[0] == tokens.shape[1] and decisive == _longest_prompt(PROMPTS) <= seen[1] < seen[0]
    np.testing.assert_allclose(cut, uncut, rtol=0, atol=1e-6)


def test_a_tower_that_pools_the_unmasked_last_position_is_not_cut(tiny_open_clip, tmp_path):  # noqa: F811
    """big_vision / CLIPA text towers (ours with pool "last", as they are imported) and an open_clip tower without
    a causal mask: every padding position reaches the pooled one, so the batch runs whole, and cutting would change
    the embedding (shown, so this test cannot pass by a cut that changes nothing)."""
    import open_clip

    ours = _tiny_ours("last")
    _, _, _, _, config = tiny_open_clip
    config = {**config, "text_cfg": {**config["text_cfg"], "no_causal_mask": True, "pool_type": "last"}}
    (tmp_path / "reclip-test-bidirectional.json").write_text(json.dumps(config))
    open_clip.add_model_config(str(tmp_path / "reclip-test-bidirectional.json"))
    model, preprocess, _ = open_clip.create_model_and_transforms("reclip-test-bidirectional", pretrained=None)
    from reclip_eval.zoo.openclip import OpenClipAdapter

    theirs = OpenClipAdapter(model, preprocess, open_clip.get_tokenizer("reclip-test-bidirectional"), "bidirectional",
                             "reclip-test-bidirectional", None)
    for adapter in (ours, theirs):
        tokens = adapter.tokenize(PROMPTS)
        assert adapter.decisive_text_length(tokens) is None
        seen = _seen_lengths(_token_embedding(adapter))
        cut, uncut = _cut_and_uncut(adapter, PROMPTS)
        assert seen == [tokens.shape[1]] * 2
        np.testing.assert_array_equal(cut, uncut)
    with torch.no_grad():  # what a cut would have done to ours
        short = ours.model.encode_text(tokens[:, :20])
        assert not torch.allclose(short, ours.model.encode_text(ours.tokenize(PROMPTS)), atol=1e-3)


@pytest.mark.parametrize("name", ["ours-eot", "ours-jax", "open_clip", "hf_transformers"])
def test_zeroshot_metrics_identical_cut_and_uncut(request, name, synth_dir):
    adapter = load_adapter("reclip-demo", backend="jax") if name == "ours-jax" else _kind(request, name)
    task, options = load_task("shapes-zeroshot"), EvalOptions(data_dir=synth_dir, workers=0)
    adapter.cut_text_padding = False
    uncut = evaluate(adapter, task, options)
    del adapter.cut_text_padding
    shutil.rmtree(cache_dir() / "class_embeddings")  # else the uncut run's classifier would be read back
    cut = evaluate(adapter, task, options)
    assert cut["metrics"] == uncut["metrics"]


SWEEP_SIZES = (48, 64)


def _counting_image_opens(monkeypatch) -> list:
    """Every PIL.Image.open from now on (each decode of an image file goes through it), by source."""
    import PIL.Image

    opened, real_open = [], PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda source, *a, **k: (opened.append(source), real_open(source, *a, **k))[1])
    return opened


@pytest.mark.parametrize("task_name", ["shapes-zeroshot", "shapes-retrieval"])
def test_a_resolution_sweep_decodes_each_image_once_and_measures_the_same(task_name, synth_dir, monkeypatch):
    from reclip_eval.eval.features import image_sweep

    task, options = load_task(task_name), EvalOptions(data_dir=synth_dir, workers=0)
    per_size, opened = {}, _counting_image_opens(monkeypatch)
    for size in SWEEP_SIZES:  # the former sweep: each size reads every image
        per_size[size] = evaluate(load_adapter("reclip-demo", image_size=size), task, options)
    images = per_size[SWEEP_SIZES[0]]["counts"]["images_evaluated"]
    assert len(opened) == len(SWEEP_SIZES) * images
    opened.clear()
    adapters = [load_adapter("reclip-demo", image_size=size) for size in SWEEP_SIZES]
    with image_sweep(adapters):
        swept = {adapter.image_size: evaluate(adapter, task, options) for adapter in adapters}
    assert len(opened) == images and len(set(opened)) == images  # each image decoded once for the whole sweep
    for size in SWEEP_SIZES:
        assert swept[size]["metrics"] == per_size[size]["metrics"], size
        assert swept[size]["counts"] == per_size[size]["counts"], size
    assert swept[48]["metrics"] != swept[64]["metrics"]  # each size saw its own pixels


def test_cli_sweep_writes_the_per_size_results(synth_dir, tmp_path):
    from reclip_eval.cli.main import main

    sizes = ",".join(map(str, SWEEP_SIZES))
    assert main(["--model", "reclip-demo", "--task", "shapes-zeroshot", "--image-size", sizes, "--data-dir",
                 str(synth_dir), "--workers", "0", "--output", str(tmp_path / "swept")]) == 0
    for size in SWEEP_SIZES:
        alone = evaluate(load_adapter("reclip-demo", image_size=size), load_task("shapes-zeroshot"),
                         EvalOptions(data_dir=synth_dir, workers=0))
        [written] = [json.loads(p.read_text()) for p in (tmp_path / "swept").rglob("*.json")
                     if json.loads(p.read_text())["model"]["image_size"] == size]
        assert written["metrics"] == alone["metrics"]
