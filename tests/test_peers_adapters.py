"""Foreign models through our adapters give the same embeddings as through their own libraries: a randomly
initialised open_clip model and a randomly initialised transformers CLIPModel, saved locally."""

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from reclip_eval.errors import CheckpointError
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task
from reclip_eval.models.config import PosEmbedResampleConfig
from reclip_eval.models.pos_embed import resample_pos_embed
from reclip_eval.zoo.resolve import load_adapter

TEXTS = ["a red circle in the top left.", "two shapes: a blue star and a green square.", "x"]


def _images(n=3, size=(50, 40)):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, size=(*size, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    """A tiny open_clip architecture registered from a JSON config, randomly initialised, saved as safetensors."""
    import open_clip
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("openclip")
    config = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    (folder / "reclip-test-tiny.json").write_text(json.dumps(config))
    open_clip.add_model_config(str(folder / "reclip-test-tiny.json"))
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("reclip-test-tiny", pretrained=None)
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "weights.safetensors"))
    return model, preprocess, open_clip.get_tokenizer("reclip-test-tiny"), folder, config


def test_open_clip_arch_with_weights_file(tiny_open_clip):
    model, preprocess, tokenizer, folder, _ = tiny_open_clip
    adapter = load_adapter("openclip:reclip-test-tiny", checkpoint=str(folder / "weights.safetensors"))
    images = _images()
    pixels = torch.stack([preprocess(i) for i in images])
    with torch.no_grad():
        expected_img = model.encode_image(pixels, normalize=True)
        expected_txt = model.encode_text(tokenizer(TEXTS), normalize=True)
    ours_pixels = torch.stack([adapter.transform(i) for i in images])
    assert torch.equal(ours_pixels, pixels)
    torch.testing.assert_close(torch.from_numpy(adapter.encode_images(ours_pixels)), expected_img, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.from_numpy(adapter.encode_texts(TEXTS)), expected_txt, rtol=0, atol=1e-6)
    assert adapter.describe()["weights"]["sha256"]


def _open_clip_folder(tiny_open_clip, tmp_path):
    """The tiny open_clip model in the folder layout (open_clip_config.json + safetensors weights)."""
    _, _, _, folder, config = tiny_open_clip
    repo = tmp_path / "oc"
    repo.mkdir()
    (repo / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": {}}))
    (repo / "open_clip_model.safetensors").write_bytes((folder / "weights.safetensors").read_bytes())
    return repo


def test_open_clip_folder_layout_and_pickles_refused(tiny_open_clip, tmp_path):
    model, preprocess, tokenizer, folder, config = tiny_open_clip
    repo = _open_clip_folder(tiny_open_clip, tmp_path)
    adapter = load_adapter(str(repo))
    assert adapter.describe()["family"] == "open_clip"
    pixels = torch.stack([preprocess(i) for i in _images()])
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(adapter.encode_images(pixels)),
                                   model.encode_image(pixels, normalize=True), rtol=0, atol=1e-6)
    (repo / "open_clip_model.safetensors").unlink()
    torch.save(model.state_dict(), repo / "open_clip_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled weights are never loaded"):
        load_adapter(str(repo))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_adapter("openclip:reclip-test-tiny", checkpoint=str(repo / "open_clip_pytorch_model.bin"))


def _write_clip_tokenizer(folder):
    """vocab.json + merges.txt of the CLIP BPE, derived from the vocabulary file open_clip ships (offline)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(str(folder))


@pytest.fixture(scope="module")
def tiny_hf_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = tmp_path_factory.mktemp("hfclip")
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": 49406,
                     "eos_token_id": 49407, "pad_token_id": 49407},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=16)
    model = CLIPModel(config).eval()
    model.save_pretrained(str(folder))
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(str(folder))
    _write_clip_tokenizer(folder)
    return model, folder


def test_hf_clip_folder_matches_transformers(tiny_hf_clip):
    from transformers import AutoTokenizer, CLIPImageProcessor

    model, folder = tiny_hf_clip
    adapter = load_adapter(f"hf:{folder}")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    processor = CLIPImageProcessor.from_pretrained(str(folder))
    # The derived tokenizer is the CLIP BPE: same ids as open_clip's for the same text.
    from open_clip.tokenizer import SimpleTokenizer

    assert tokenizer(TEXTS[0])["input_ids"] == [49406] + SimpleTokenizer().encode(TEXTS[0]) + [49407]
    images = _images()
    inputs = processor(images=images, return_tensors="pt")
    text_inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        image_out = model.get_image_features(**inputs)
        text_out = model.get_text_features(**text_inputs)
    image_out = getattr(image_out, "pooler_output", image_out)
    text_out = getattr(text_out, "pooler_output", text_out)
    ours_pixels = torch.stack([adapter.transform(i) for i in images])
    torch.testing.assert_close(ours_pixels, inputs["pixel_values"])
    torch.testing.assert_close(torch.from_numpy(adapter.encode_images(ours_pixels)),
                               torch.nn.functional.normalize(image_out, dim=-1),
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.from_numpy(adapter.encode_texts(TEXTS)),
                               torch.nn.functional.normalize(text_out, dim=-1), rtol=0, atol=1e-6)
    # The same folder is recognised without the hf: prefix too.
    assert load_adapter(str(folder)).describe()["family"] == "hf_transformers"


def test_foreign_models_run_a_task_end_to_end(tiny_open_clip, tiny_hf_clip, synth_dir):
    _, _, _, oc_folder, _ = tiny_open_clip
    _, hf_folder = tiny_hf_clip
    for adapter in (load_adapter("openclip:reclip-test-tiny", checkpoint=str(oc_folder / "weights.safetensors")),
                    load_adapter(f"hf:{hf_folder}")):
        results = evaluate(adapter, load_task("shapes-retrieval"), EvalOptions(data_dir=synth_dir, workers=0))
        assert results["counts"]["images_evaluated"] == 30 and results["model"]["weights"]["sha256"]
        json.dumps(results)  # the results JSON can be written


def _resampled_like_ours(table: torch.Tensor, native: int, size: int, patch: int) -> torch.Tensor:
    """What our resampler, in our default mode, makes of a (class token + grid) table."""
    mode = PosEmbedResampleConfig()
    return resample_pos_embed(table, (native // patch,) * 2, (size // patch,) * 2, num_prefix=1, mode=mode.mode,
                              align_corners=mode.align_corners, antialias=mode.antialias)


def _check_runs_at(adapter, size: int) -> None:
    pixels = torch.stack([adapter.transform(i) for i in _images()])
    assert adapter.image_size == size and pixels.shape[-2:] == (size, size)
    assert np.isfinite(adapter.encode_images(pixels)).all()
    resample = adapter.describe()["pos_embed_resample"]
    assert resample["mode"] == PosEmbedResampleConfig().mode and resample["from_image_size"] != size


@pytest.mark.parametrize("layout", ["arch", "folder"])
def test_open_clip_at_another_image_size_is_resampled_by_ours(tiny_open_clip, tmp_path, layout):
    model, _, _, folder, config = tiny_open_clip
    native, patch = config["vision_cfg"]["image_size"], config["vision_cfg"]["patch_size"]
    size = native + 2 * patch
    spec = str(_open_clip_folder(tiny_open_clip, tmp_path)) if layout == "folder" else "openclip:reclip-test-tiny"
    adapter = load_adapter(spec, checkpoint=str(folder / "weights.safetensors") if layout == "arch" else None,
                           image_size=size)
    _check_runs_at(adapter, size)
    resized = adapter.model.state_dict()
    key = "visual.positional_embedding"
    assert torch.equal(resized[key], _resampled_like_ours(model.state_dict()[key], native, size, patch))
    assert all(torch.equal(resized[k], v) for k, v in model.state_dict().items() if k != key)


def test_hf_clip_at_another_image_size_is_resampled_by_ours(tiny_hf_clip):
    model, folder = tiny_hf_clip
    vision = model.config.vision_config
    size = vision.image_size + 2 * vision.patch_size
    adapter = load_adapter(f"hf:{folder}", image_size=size)
    _check_runs_at(adapter, size)
    resized = adapter.model.state_dict()
    key = "vision_model.embeddings.position_embedding.weight"
    expected = _resampled_like_ours(model.state_dict()[key], vision.image_size, size, vision.patch_size)
    assert torch.equal(resized[key], expected)
    assert all(torch.equal(resized[k], v) for k, v in model.state_dict().items()
               if k != key and not k.endswith("position_ids"))


def test_foreign_image_size_not_a_multiple_of_the_patch_is_refused(tiny_open_clip, tiny_hf_clip, tmp_path):
    _, _, _, folder, config = tiny_open_clip
    patch = config["vision_cfg"]["patch_size"]
    size = 5 * patch + 1
    specs = [("openclip:reclip-test-tiny", str(folder / "weights.safetensors")),
             (str(_open_clip_folder(tiny_open_clip, tmp_path)), None), (f"hf:{tiny_hf_clip[1]}", None)]
    for spec, checkpoint in specs:
        with pytest.raises(CheckpointError, match=f"image size {size} is not a multiple of the model's patch size "
                                                  f"{patch}"):
            load_adapter(spec, checkpoint=checkpoint, image_size=size)


def test_open_clip_without_weights_only_on_purpose_and_marked(tiny_open_clip, tiny_hf_clip):
    weights = str(tiny_open_clip[3] / "weights.safetensors")
    with pytest.raises(CheckpointError, match="no weights given.*--random-init"):
        load_adapter("openclip:reclip-test-tiny")
    adapter = load_adapter("openclip:reclip-test-tiny", random_init=True)
    described = adapter.describe()
    assert described["id"] == adapter.model_id == "openclip:reclip-test-tiny+random-init"
    assert described["weights"]["random_init"] is True and described["weights"]["sha256"] is None
    assert load_adapter("openclip:reclip-test-tiny", checkpoint=weights).describe()["weights"]["random_init"] is False
    with pytest.raises(CheckpointError, match="contradict"):
        load_adapter("openclip:reclip-test-tiny", checkpoint=weights, random_init=True)
    with pytest.raises(CheckpointError, match="--random-init applies to openclip:ARCH"):
        load_adapter(f"hf:{tiny_hf_clip[1]}", random_init=True)


def _with_nan(source, target, key):
    state = load_file(str(source))
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(target), metadata={"format": "pt"})


def test_foreign_weights_holding_nan_are_refused(tiny_open_clip, tiny_hf_clip, tmp_path):
    weights = tiny_open_clip[3] / "weights.safetensors"
    _with_nan(weights, tmp_path / "nan.safetensors", "visual.proj")
    with pytest.raises(CheckpointError, match=r"nan.safetensors: 1 tensor holds NaN or inf values \(visual.proj\)"):
        load_adapter("openclip:reclip-test-tiny", checkpoint=str(tmp_path / "nan.safetensors"))
    hf = Path(shutil.copytree(tiny_hf_clip[1], tmp_path / "hf"))
    _with_nan(hf / "model.safetensors", hf / "model.safetensors", "text_projection.weight")
    with pytest.raises(CheckpointError, match=r"model.safetensors: 1 tensor holds NaN.*text_projection.weight"):
        load_adapter(f"hf:{hf}")
