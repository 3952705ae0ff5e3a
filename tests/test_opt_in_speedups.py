"""Approximate speedups (issue 35), opt-in and recorded: JPEG reduced-scale decoding (`--decode draft`, and the
training loader's `data.decode: draft`) and bf16 on a CPU with native bf16 arithmetic (refused on one without).
A run with one of them is another measurement than one without: the results store refuses to mix them."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from reclip_eval.data.decode import decoding, draft_side
from reclip_eval.data.images import open_image
from reclip_eval.device import PrecisionError, cpu_bf16_flags, resolve_precision
from reclip_eval.errors import ConfigError, ResultsConflictError
from reclip_eval.eval.results_store import store_results
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task
from reclip_eval.models import CLIP, build_config
from reclip_eval.models.presets import with_image_size
from reclip_eval.zoo.reclip import ReclipAdapter

from .conftest import run_cli


def _encoded(width: int, height: int, format: str) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=format)
    return out.getvalue()


@pytest.mark.parametrize(("size", "side", "expected"), [
    ((500, 375), 64, (125, 94)),  # 1/4: the largest reduction keeping both sides >= 1.25 x 64 (1/8 gives 63 x 47)
    ((500, 375), 128, (250, 188)),  # 1/2
    ((500, 375), 160, (500, 375)),  # 375 < 2 x 1.25 x 160: decoded in full
    ((128, 128), 64, (128, 128)),  # the demo's JPEGs at 64 px: 1/2 would leave no margin, decoded in full
    ((500, 375), None, (500, 375)),  # not asked for
])
def test_draft_decodes_a_jpeg_at_the_largest_reduction_keeping_the_side(size, side, expected):
    image = open_image(io.BytesIO(_encoded(*size, "JPEG")), side)
    assert image.size == expected and image.mode == "RGB"


def test_draft_leaves_other_formats_decoded_in_full():
    data = _encoded(500, 375, "PNG")
    assert np.array_equal(np.asarray(open_image(io.BytesIO(data), 64)), np.asarray(open_image(io.BytesIO(data))))


def test_draft_side_is_the_largest_size_of_the_pass_and_only_when_asked():
    assert draft_side([64, 224]) is None  # the default: full decode
    with decoding("draft"):
        assert draft_side([64, [112, 224]]) == 224
    with pytest.raises(ValueError, match="decode: expected one of full, draft, got 'fast'"):
        with decoding("fast"):
            pass


def _tiny() -> ReclipAdapter:
    """The tiny model at 16 px: the test set's 64 px JPEGs are 4 x its side, so a draft decode (1/2) applies."""
    torch.manual_seed(0)
    return ReclipAdapter(CLIP(with_image_size(build_config("tiny"), 16)), "tiny-decode")


def _seen_sizes(adapter: ReclipAdapter) -> list[tuple[int, int]]:
    """The sizes of the images reaching `adapter`'s transform (workers=0: in this process), from now on."""
    seen, transform = [], adapter.transform

    def recording(image):
        seen.append(image.size)
        return transform(image)

    adapter.transform = recording
    return seen


def test_evaluation_with_draft_decodes_reduced_and_is_recorded_as_another_measurement(synth_dir, tmp_path):
    task = load_task("shapes-zeroshot")
    adapter = _tiny()
    seen = _seen_sizes(adapter)
    full = evaluate(adapter, task, EvalOptions(data_dir=synth_dir, workers=0))
    full_sizes, seen[:] = set(seen), []
    drafted = evaluate(adapter, task, EvalOptions(data_dir=synth_dir, workers=0, decode="draft"))
    # The set's JPEGs are 64 px: for the 16 px model they are decoded at 1/2 (32 >= 1.25 x 16) only when asked.
    assert adapter.image_size == 16 and full_sizes == {(64, 64)}
    assert set(seen) == {(32, 32)}
    assert "decode" not in full and drafted["decode"] == "draft"
    assert full["counts"] == drafted["counts"]
    path = tmp_path / "r.json"
    store_results(full, path)
    with pytest.raises(ResultsConflictError, match='decode: <absent> in the file, "draft" in this run'):
        store_results(drafted, path)


def test_decode_options_are_checked_before_anything_runs():
    with pytest.raises(ConfigError, match="decode: expected 'full' or 'draft', got 'fast'"):
        EvalOptions(decode="fast")
    with pytest.raises(ConfigError, match="decode: 'draft' is not available for task 'shapes-lvis'"):
        evaluate(_tiny(), load_task("shapes-lvis"), EvalOptions(decode="draft", data_dir="/nonexistent"))


def test_cli_decode_draft_is_recorded(synth_dir, tmp_path):
    run = run_cli("--model", "reclip-demo", "--task", "shapes-zeroshot", "--data-dir", str(synth_dir),
                  "--workers", "0", "--decode", "draft", "--output", str(tmp_path), "--image-size", "32")
    assert run.returncode == 0, run.stderr[-2000:]
    (path,) = tmp_path.glob("*.json")
    assert json.loads(path.read_text())["decode"] == "draft"


def test_bf16_on_a_cpu_without_native_bf16_is_refused_in_one_line(tmp_path):
    plain = tmp_path / "cpuinfo"
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    with pytest.raises(PrecisionError, match=r"precision bf16 on the CPU: .* none of avx512_bf16"):
        resolve_precision("bf16", "cpu", cpuinfo=plain)
    native = tmp_path / "cpuinfo_bf16"
    native.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16\n")
    assert cpu_bf16_flags(native) == ["avx512_bf16", "amx_bf16"]
    assert resolve_precision("bf16", "cpu", cpuinfo=native) == "bf16"
    assert resolve_precision("auto", "cpu", cpuinfo=native) == "fp32"  # approximate: only when asked for
    assert cpu_bf16_flags(tmp_path / "absent") is None  # unknown (not Linux): not refused
    assert resolve_precision("bf16", "cpu", cpuinfo=tmp_path / "absent") == "bf16"


def test_training_stream_decodes_reduced_only_with_the_recipe_key():
    from reclip_eval.data.shards import _decode_samples
    from reclip_eval.train.recipe import load_recipe

    sample = {"__key__": "0", "jpg": _encoded(128, 128, "JPEG"), "txt": b"a red circle"}
    seen = []

    def transform(image):
        seen.append(image.size)
        return torch.zeros(1)

    list(_decode_samples(iter([dict(sample)]), transform))
    list(_decode_samples(iter([dict(sample)]), transform, draft=32))
    assert seen == [(128, 128), (64, 64)]  # 1/2: 1/4 would leave 32 < 1.25 x 32
    assert load_recipe("tiny-shapes").data.decode == "full"
    assert load_recipe("tiny-shapes", ["data.decode=draft"]).data.decode == "draft"
    with pytest.raises(ConfigError, match="data.decode"):
        load_recipe("tiny-shapes", ["data.decode=fast"])


def test_our_tokenizer_skips_the_open_clip_package_import_and_tokenizes_the_same():
    """An exact speedup beside the opt-in ones: open_clip's BPE module is loaded without the package's __init__
    (which imports every open_clip model: seconds), in a fresh process, and gives open_clip's own tokens."""
    import subprocess
    import sys

    from open_clip.tokenizer import SimpleTokenizer

    from reclip_eval.classifier.templates import read_templates
    from reclip_eval.data.imagefolder import read_class_list

    spec = load_task("imagenet")
    names = list(read_class_list(spec.resource(spec.classes)).names)[::37]
    texts = [t.format(n) for n in names for t in read_templates(spec.resource(spec.templates))[::9]]
    texts += ["Ünïcödé &amp; <b>html</b>   spaces", "x " * 100]  # ftfy + html unescaping, truncation
    code = ("import json, sys; from reclip_eval.models.tokenizer import ClipTokenizer; "
            "tokens = ClipTokenizer(77)(json.load(sys.stdin)); "
            "print(json.dumps({'open_clip_imported': 'open_clip' in sys.modules, 'tokens': tokens.tolist()}))")
    run = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    fresh = json.loads(run.stdout)
    assert fresh["open_clip_imported"] is False
    assert fresh["tokens"] == SimpleTokenizer()(texts, context_length=77).tolist()


def test_texts_are_batched_by_length_and_returned_in_order():
    """An exact speedup: prompts batched in order of length, so a batch cut at its longest prompt computes little
    padding; every row equals that text encoded alone (1e-6) and the text tower sees fewer positions."""
    from reclip_eval.eval.features import encode_texts

    adapter = _tiny()
    texts = [("a photo of a " + "very " * (i % 7) + "big thing number {}.").format(i) for i in range(40)]
    seen: list[int] = []
    adapter.model.text.token_embed.register_forward_pre_hook(lambda _, args: seen.append(args[0].numel()))
    batched = encode_texts(adapter, texts, batch_size=8)
    positions = sum(seen)
    alone = np.concatenate([adapter.encode_texts([t]) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-6)
    seen.clear()
    unsorted = np.concatenate([adapter.encode_texts(texts[i:i + 8]) for i in range(0, len(texts), 8)])
    np.testing.assert_allclose(batched, unsorted, atol=1e-6)
    assert positions < sum(seen)
