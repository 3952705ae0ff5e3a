"""transformers SiglipModel folders (`--model hf:DIR`) give transformers' own numbers: a randomly initialised tiny
SiglipModel saved with save_pretrained beside its processor, whose SentencePiece tokenizer is trained here, offline.
Embeddings equal get_image_features / get_text_features, and zero-shot probabilities and ranking equal the
`zero-shot-image-classification` pipeline's."""

import io
import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import reclip_eval
from reclip_eval.cli.main import main
from reclip_eval.errors import CheckpointError
from reclip_eval.eval.zeroshot import build_classifier
from reclip_eval.zoo.resolve import load_adapter

# The last is longer than the text tower's 64 positions: truncated, its end token kept.
TEXTS = ["a photo of a red circle.", "two blue squares on a green field", "x", "a star and a circle " * 20]
LABELS = ["circle", "square", "star", "triangle"]
TEMPLATE = "a photo of a {}."
# SigLIP is trained with logit scale 10 and bias -10; a smaller bias keeps the sigmoid probabilities of a random
# model away from 0, so comparing them to 1e-5 says something.
LOGIT_SCALE, LOGIT_BIAS = 10.0, -1.5


def _images(n=4):
    rng = np.random.default_rng(0)
    sizes = [(50, 40), (32, 32), (64, 20), (17, 90)]  # the processor resizes each to the square
    return [Image.fromarray(rng.integers(0, 255, size=(*sizes[i % 4], 3), dtype=np.uint8)) for i in range(n)]


def _train_sentencepiece() -> bytes:
    """A tiny unigram SentencePiece model of a few shape captions (pad 0, eos 1, unk 2 as the tokenizer expects)."""
    import sentencepiece

    corpus = ["a photo of a red circle.", "two blue squares on a green field", "this is a photo of a star",
              "a triangle, a square and a circle in yellow", "shapes: circle square triangle star"] * 20
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=model, vocab_size=32,
                                             model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                             minloglevel=2)
    return model.getvalue()


def _save_tiny_siglip(folder, tokenizer, version=""):
    """A random tiny SiglipModel (version "2": Siglip2Model) of `tokenizer`'s vocabulary, saved with its processor
    into `folder`: 32x32 images in 8x8 patches (SigLIP 2: at most 16 patches, each image's grid its own)."""
    import transformers

    config_class, model_class, image_processor_class, processor_class = (
        getattr(transformers, f"Siglip{version}{name}") for name in ("Config", "Model", "ImageProcessor", "Processor"))
    torch.manual_seed(0)
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "patch_size": 8, **({"num_patches": 16} if version else {"image_size": 32})}
    config = config_class(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 64,
                     "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "bos_token_id": None},
        vision_config=vision)
    model = model_class(config).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(LOGIT_SCALE))
        model.logit_bias.fill_(LOGIT_BIAS)
    model.save_pretrained(str(folder))
    image_processor = image_processor_class(patch_size=8, max_num_patches=16) if version else \
        image_processor_class(size={"height": 32, "width": 32})
    processor_class(image_processor, tokenizer).save_pretrained(str(folder))
    return model, folder


@pytest.fixture(scope="module")
def tiny_hf_siglip(tmp_path_factory):
    """SigLIP as google/siglip-* ship it: SiglipTokenizer (spiece.model), padded on the right with its end token."""
    from transformers import SiglipTokenizer

    folder = tmp_path_factory.mktemp("hfsiglip")
    (folder / "spiece.model").write_bytes(_train_sentencepiece())
    return _save_tiny_siglip(folder, SiglipTokenizer(str(folder / "spiece.model"), model_max_length=64))


def _gemma_tokenizer(tokenizer_class):
    """A Gemma-style BPE of single characters (tokenizer.json), padded on the left with <pad>."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    vocab.update({char: 5 + i for i, char in enumerate("abcdefghijklmnopqrstuvwxyz.,:\u2581")})
    tokenizer = tokenizer_class(vocab=vocab, merges=[], model_max_length=64)
    assert tokenizer.padding_side == "left"
    return tokenizer


@pytest.fixture(scope="module")
def tiny_hf_siglip_gemma(tmp_path_factory):
    """SigLIP as SigLIP 2's fixed-size checkpoints ship it: a SiglipModel with a Gemma tokenizer.json."""
    from transformers import GemmaTokenizer

    return _save_tiny_siglip(tmp_path_factory.mktemp("hfsiglipgemma"), _gemma_tokenizer(GemmaTokenizer))


@pytest.fixture(scope="module")
def tiny_hf_siglip2(tmp_path_factory):
    """SigLIP 2 NaFlex: a Siglip2Model with its Siglip2Tokenizer (Gemma's, lower-casing) and Siglip2ImageProcessor."""
    from transformers import Siglip2Tokenizer

    return _save_tiny_siglip(tmp_path_factory.mktemp("hfsiglip2"), _gemma_tokenizer(Siglip2Tokenizer), version="2")


# Each folder fixture with the model class and the image size the results record (SigLIP 2: the side of the square
# image that fills its 16 patches of 8 pixels).
SIGLIP_FOLDERS = {"tiny_hf_siglip": ("SiglipModel", 32), "tiny_hf_siglip_gemma": ("SiglipModel", 32),
                  "tiny_hf_siglip2": ("Siglip2Model", 32)}


def _transformers_embeddings(model, folder, images, texts):
    from transformers import AutoProcessor

    # The processor's halves as the pipeline calls them (Siglip2Processor's own call would override the image
    # processor's saved patch settings by its class defaults, 256 patches of 16). Their whole outputs: transformers
    # 5's tokenizers return the padding mask too, SigLIP 2's image processor the patch mask and each image's grid.
    processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
    image_inputs = dict(processor.image_processor(images=images, return_tensors="pt"))
    text_inputs = dict(processor.tokenizer(texts, padding="max_length", max_length=64, truncation=True,
                                           return_tensors="pt"))
    with torch.no_grad():
        image_out = model.get_image_features(**image_inputs)
        text_out = model.get_text_features(**text_inputs)
    pooled = [getattr(out, "pooler_output", out) for out in (image_out, text_out)]
    return image_inputs, *(torch.nn.functional.normalize(p, dim=-1) for p in pooled)


def _model_inputs(adapter, pixels):
    """What our batch of transformed images hands the model (SigLIP 2's unpacked)."""
    from reclip_eval.zoo.hf_siglip import unpack

    return unpack(pixels) if adapter.architecture.naflex else {"pixel_values": pixels}


@pytest.mark.parametrize("siglip_folder", SIGLIP_FOLDERS)
def test_siglip_folder_embeddings_equal_transformers(siglip_folder, request):
    model, folder = request.getfixturevalue(siglip_folder)
    images = _images()
    image_inputs, image_expected, text_expected = _transformers_embeddings(model, folder, images, TEXTS)
    for adapter in (load_adapter(f"hf:{folder}"), reclip_eval.load(f"hf:{folder}", device="cpu")):
        ours_pixels = torch.stack([adapter.transform(i) for i in images])
        ours_inputs = _model_inputs(adapter, ours_pixels)
        assert ours_inputs.keys() == image_inputs.keys()
        for key, value in image_inputs.items():
            torch.testing.assert_close(ours_inputs[key], value, rtol=0, atol=0)
        torch.testing.assert_close(torch.from_numpy(adapter.encode_images(ours_pixels)), image_expected,
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(adapter.encode_texts(TEXTS)), text_expected, rtol=0, atol=1e-5)
        described = adapter.describe()
        assert (described["family"], described["architecture"], adapter.image_size) == \
            ("hf_transformers", *SIGLIP_FOLDERS[siglip_folder])
        assert described["logit_scale"] == pytest.approx(LOGIT_SCALE) and described["logit_bias"] == LOGIT_BIAS
        assert adapter.image_gmacs() > 0
    # Recognised without the hf: prefix too.
    assert load_adapter(str(folder)).describe()["architecture"] == SIGLIP_FOLDERS[siglip_folder][0]


@pytest.mark.parametrize("siglip_folder", SIGLIP_FOLDERS)
def test_siglip_zero_shot_equals_the_transformers_pipeline(siglip_folder, request, monkeypatch):
    from transformers import pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, folder = request.getfixturevalue(siglip_folder)
    classify = pipeline("zero-shot-image-classification", model=str(folder), device="cpu")
    adapter = reclip_eval.load(f"hf:{folder}", device="cpu")
    classifier = build_classifier(adapter, LABELS, [TEMPLATE], batch_size=8)  # the classifier our zero-shot runs
    described = adapter.describe()
    images = _images()
    cosines = torch.from_numpy(adapter.encode_images(torch.stack([adapter.transform(i) for i in images]))) \
        @ classifier.t()
    for image, row in zip(images, cosines, strict=True):
        theirs = classify(image, candidate_labels=LABELS, hypothesis_template=TEMPLATE)
        their_scores = torch.tensor([next(r["score"] for r in theirs if r["label"] == label) for label in LABELS])
        # The pipeline's probability is sigmoid(scale * cosine + bias): ours from the recorded scale and bias.
        ours = torch.sigmoid(described["logit_scale"] * row + described["logit_bias"])
        torch.testing.assert_close(ours, their_scores, rtol=0, atol=1e-5)
        assert [LABELS[i] for i in row.argsort(descending=True)] == [r["label"] for r in theirs]


@pytest.mark.parametrize("siglip_folder", ["tiny_hf_siglip", "tiny_hf_siglip2"])
def test_siglip_folder_evaluates_from_the_cli(siglip_folder, request, synth_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECLIP_CACHE", str(tmp_path / "cache"))
    _, folder = request.getfixturevalue(siglip_folder)
    assert main(["--model", f"hf:{folder}", "--task", "shapes-zeroshot", "--data-dir", str(synth_dir),
                 "--output", str(tmp_path / "res"), "--workers", "0"]) == 0, capsys.readouterr().err
    (result,) = (tmp_path / "res").glob("*__shapes-zeroshot.json")
    results = json.loads(result.read_text())
    assert (results["model"]["family"], results["model"]["architecture"]) == \
        ("hf_transformers", SIGLIP_FOLDERS[siglip_folder][0])
    assert results["model"]["logit_bias"] == LOGIT_BIAS and results["counts"]["images_evaluated"] > 0


def test_siglip_folder_saved_by_its_image_processor_alone_loads(tiny_hf_siglip, tmp_path):
    """Hub SigLIP repos carry preprocessor_config.json (an image processor's own save_pretrained)."""
    from transformers import SiglipImageProcessor

    _, folder = tiny_hf_siglip
    copy = shutil.copytree(folder, tmp_path / "hub-like")
    (copy / "processor_config.json").unlink()
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(str(copy))
    saved_with_processor, hub_like = load_adapter(f"hf:{folder}"), load_adapter(f"hf:{copy}")
    for image in _images():
        torch.testing.assert_close(hub_like.transform(image), saved_with_processor.transform(image), rtol=0, atol=0)


@pytest.mark.parametrize("break_folder, message", [
    (lambda f: (f / "spiece.model").unlink(),
     r"no tokenizer vocabulary: tokenizer\.json, or spiece\.model, expected \(spiece\.model missing\)"),
    (lambda f: (f / "processor_config.json").unlink(),
     r"preprocessor_config\.json: missing; the image preprocessing of a transformers SiglipModel folder"),
    (lambda f: (f / "config.json").write_text(json.dumps({"model_type": "blip"})),
     r"config\.json: model_type 'blip' is not a transformers dual encoder this kind loads \(one of clip, siglip"),
])
def test_incomplete_siglip_folders_are_refused(tiny_hf_siglip, tmp_path, break_folder, message):
    copy = shutil.copytree(tiny_hf_siglip[1], tmp_path / "broken")
    break_folder(copy)
    with pytest.raises(CheckpointError, match=message):
        load_adapter(f"hf:{copy}")


def test_siglip_at_another_image_size_is_refused(tiny_hf_siglip, tiny_hf_siglip2):
    with pytest.raises(CheckpointError, match=r"image size 48: a SiglipModel runs at its own size 32 only"):
        load_adapter(f"hf:{tiny_hf_siglip[1]}", image_size=48)
    with pytest.raises(CheckpointError, match=r"image size 32: a Siglip2Model sizes each image by its processor's "
                                              r"max_num_patches"):
        load_adapter(f"hf:{tiny_hf_siglip2[1]}", image_size=32)


def test_siglip2_folder_without_its_tokenizer_json_is_refused(tiny_hf_siglip2, tmp_path):
    copy = shutil.copytree(tiny_hf_siglip2[1], tmp_path / "broken")
    (copy / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"no tokenizer vocabulary: tokenizer\.json, expected \(tokenizer\.json "
                                              r"missing\)"):
        load_adapter(f"hf:{copy}")
