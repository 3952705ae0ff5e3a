"""The model-kind registry (zoo/model_kinds.py): folders are offered to the kinds in priority order, a kind with a
prefix form is loaded by its prefix, a new kind is one registration, and the detector kind comes from detect/
without the zoo importing it."""

import json
import subprocess
import sys

import pytest

from reclip_eval.checkpoint import HUB_FILES
from reclip_eval.errors import CheckpointError, UnknownNameError
from reclip_eval.zoo import model_kinds
from reclip_eval.zoo.model_kinds import MODEL_KINDS, LoadRequest, PrefixForm, register_model_kind
from reclip_eval.zoo.resolve import folder_kind, load_adapter

from .test_layout import PACKAGE, _imports


@pytest.fixture
def scratch_registry(monkeypatch):
    """Kinds registered in a test are gone after it."""
    monkeypatch.setattr(MODEL_KINDS, "_items", dict(MODEL_KINDS._items))


def _folder(tmp_path, name="m", **files):
    folder = tmp_path / name
    folder.mkdir()
    for filename, content in files.items():
        (folder / filename.replace("__", ".")).write_text(content if isinstance(content, str) else json.dumps(content))
    return folder


def test_no_zoo_module_imports_detect_even_lazily():
    """`_imports` walks the whole tree, so an import inside a function counts too."""
    for path in (PACKAGE / "zoo").rglob("*.py"):
        assert "detect" not in _imports(path), path


def test_zoo_alone_knows_no_detector_and_the_plugin_list_adds_it():
    script = ("import sys\nfrom reclip_eval.zoo.model_kinds import model_kinds\nimport reclip_eval.zoo.resolve\n"
              "print([k.name for k in model_kinds()], 'reclip_eval.detect' in sys.modules)\n"
              "import reclip_eval.kinds\nprint([k.name for k in model_kinds()])\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    zoo_only, with_plugins = out.stdout.strip().splitlines()
    assert zoo_only == "['open_clip', 'reclip', 'hf_transformers', 'big_vision'] False"
    assert with_plugins == "['open_clip', 'reclip', 'reclip_detector', 'hf_transformers', 'big_vision']"


def test_open_clip_config_decides_before_any_config_json_is_read(tmp_path):
    folder = _folder(tmp_path, open_clip_config__json={"model_cfg": {}}, config__json="{not json")
    assert folder_kind(folder).name == "open_clip"


def test_ours_wins_over_transformers_when_a_config_says_both(tmp_path):
    folder = _folder(tmp_path, config__json={"architecture": "reclip-clip", "model_type": "clip"})
    assert folder_kind(folder).name == "reclip"
    assert folder_kind(_folder(tmp_path, "hf", config__json={"model_type": "clip"})).name == "hf_transformers"


def test_folders_of_no_kind_say_why(tmp_path):
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        folder_kind(_folder(tmp_path, "bad", config__json="{not json"))
    other = _folder(tmp_path, "other", config__json={"model_type": "bert", "hidden_size": 8})
    with pytest.raises(CheckpointError) as e:
        folder_kind(other)
    assert str(e.value) == (f"{other / 'config.json'}: neither a reclip-eval checkpoint (architecture 'reclip-clip') "
                            "nor a transformers CLIP model (model_type 'clip'); found ['hidden_size', 'model_type']")
    empty = _folder(tmp_path, "empty")
    with pytest.raises(CheckpointError) as e:
        folder_kind(empty)
    assert str(e.value) == f"{empty}: no config.json or open_clip_config.json: not a model folder"


def test_a_detector_folder_is_the_detector_kind_and_refuses_another_image_size(tmp_path):
    import reclip_eval.kinds  # noqa: F401

    folder = _folder(tmp_path, config__json={"architecture": "reclip-detector"})
    assert folder_kind(folder).name == "reclip_detector"
    with pytest.raises(CheckpointError, match="a detector runs at its trained canvas size; drop --image-size"):
        load_adapter(str(folder), image_size=64)


def test_hub_downloads_the_files_of_every_kind_and_no_pickles():
    expected = HUB_FILES + ["open_clip_config.json", "open_clip_model.safetensors", "preprocessor_config.json",
                            "processor_config.json", "tokenizer*", "vocab.json", "merges.txt", "spiece.model",
                            "special_tokens_map.json"]
    files = model_kinds.hub_files()
    assert sorted(files) == sorted(expected) and len(files) == len(set(files))
    assert not any(f.endswith((".bin", ".pt", ".pth", ".ckpt")) for f in files)


class _ToyAdapter:
    def __init__(self, where, request):
        self.where, self.request, self.device = where, request, None

    def place(self, device, precision="fp32"):
        self.device = device
        return self


def test_a_new_kind_is_one_registration(tmp_path, scratch_registry):
    @register_model_kind("toy", priority=35, layout="toy.json", recognise=lambda folder: folder.has("toy.json"),
                         prefix_form=PrefixForm("toy:", "NAME", lambda name, request: _ToyAdapter(name, request),
                                                random_init=True))
    def load_toy(folder, request: LoadRequest):
        return _ToyAdapter(folder, request)

    folder = _folder(tmp_path, toy__json="{}")
    adapter = load_adapter(str(folder), image_size=48, device="meta")
    assert (adapter.where, adapter.request.model_id, adapter.request.image_size, adapter.device) == \
        (folder, str(folder), 48, "meta")
    by_prefix = load_adapter("toy:cube", checkpoint="w.safetensors", random_init=True)
    assert by_prefix.where == "cube" and by_prefix.request.checkpoint == "w.safetensors"
    # --random-init names every prefix form that takes it.
    with pytest.raises(CheckpointError, match="--random-init applies to openclip:ARCH or toy:NAME models only"):
        load_adapter(str(folder), random_init=True)


def test_kind_names_and_priorities_are_unique(scratch_registry):
    def load(folder, request):
        raise AssertionError("never loaded")

    with pytest.raises(ValueError, match="registered twice"):
        register_model_kind("reclip", priority=99, layout="-", recognise=lambda f: False)(load)
    with pytest.raises(ValueError, match="priority 20 is taken by 'reclip'"):
        register_model_kind("toy", priority=20, layout="-", recognise=lambda f: False)(load)


def test_models_command_lists_the_kinds_with_their_forms(capsys):
    from reclip_eval.cli.main import main

    assert main(["models"]) == 0
    rows = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.startswith("|")}
    assert "openclip:ARCH" in rows["open_clip"] and "hf:PATH" in rows["hf_transformers"]
    assert "architecture 'reclip-detector'" in rows["reclip_detector"] and "hf-hub:ORG/NAME" in rows["reclip"]


def test_unknown_architecture_preset_has_the_common_near_match_message():
    from reclip_eval.models.presets import build_config

    with pytest.raises(UnknownNameError) as e:
        build_config("tinyy")
    assert str(e.value) == "unknown architecture preset 'tinyy'. Did you mean: tiny? Known: demo, mini, " \
                           "mini-p16, tiny, vit-b16, vit-h14, vit-l16, vit-l16-text12x1024."
