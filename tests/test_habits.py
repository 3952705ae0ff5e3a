"""What OpenCLIP and CLIP_benchmark users type out of habit gets a one-line answer naming the fix, before any model
is built: a bare open_clip architecture name, open_clip's pretrained tags (`--pretrained TAG`, read through the
Hugging Face cache), a tag given as --checkpoint, a folder that does not exist, and CLIP_benchmark's dataset names
(aliases of our tasks, one table: tasks/aliases.tsv)."""

from __future__ import annotations

import ast
import inspect
import logging
import shutil

import pytest
import torch
import yaml

from reclip_eval.cli.main import main
from reclip_eval.errors import CheckpointError, ConfigError, UnknownNameError
from reclip_eval.eval.tasks import load_task, task_aliases
from reclip_eval.kinds import load_adapter
from reclip_eval.registry import named_yaml_files

from .conftest import REPO
from .test_checkpoint import _lay_out_hf_cache

ARCH, TAG, TAG_REPO = "ViT-B-32", "laion2b_s34b_b79k", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


def _one_line_error(capsys, *argv: str) -> str:
    assert main([*argv, "--task", "shapes-zeroshot"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def _built_nothing(caplog) -> bool:
    """No "Model initialized randomly" from open_clip, which it logs whenever it builds a model without loading
    weights itself: nothing was built, or (our loader) weights were loaded right after."""
    return not any("initialized randomly" in r.getMessage() for r in caplog.records)


def test_bare_open_clip_architecture_names_the_prefix_form(capsys, caplog):
    caplog.set_level(logging.INFO)
    assert f"use --model openclip:{ARCH} --pretrained TAG" in _one_line_error(capsys, "--model", ARCH)
    err = _one_line_error(capsys, "--model", ARCH, "--pretrained", TAG)
    assert f"use --model openclip:{ARCH} --pretrained {TAG}" in err
    assert _built_nothing(caplog)
    # A name that is neither ours nor open_clip's keeps the near-match answer.
    assert "Did you mean: reclip-64" in _one_line_error(capsys, "--model", "reclip-46")


def test_pretrained_tag_given_as_checkpoint_says_use_pretrained(capsys, caplog):
    caplog.set_level(logging.INFO)
    err = _one_line_error(capsys, "--model", f"openclip:{ARCH}", "--checkpoint", TAG)
    assert f"use --pretrained {TAG}" in err
    assert "no such file" in _one_line_error(capsys, "--model", f"openclip:{ARCH}", "--checkpoint", "gone.safetensors")
    assert _built_nothing(caplog)


def test_unknown_pretrained_tag_lists_the_architectures_tags(caplog):
    caplog.set_level(logging.INFO)
    with pytest.raises(UnknownNameError) as e:
        load_adapter(f"openclip:{ARCH}", pretrained="laion2b_s34b_b79")
    assert f"Did you mean: {TAG}" in str(e.value) and "openai" in str(e.value)
    assert _built_nothing(caplog)


def test_pretrained_applies_to_open_clip_architectures_only():
    with pytest.raises(CheckpointError, match="--pretrained applies to openclip:ARCH models only"):
        load_adapter("reclip-demo", pretrained=TAG)
    with pytest.raises(CheckpointError, match="--checkpoint x.safetensors and --pretrained .* contradict"):
        load_adapter(f"openclip:{ARCH}", checkpoint="x.safetensors", pretrained=TAG)


def _offline_cache(monkeypatch, hub_cache):
    """huggingface_hub reads these constants at call time: an empty (or fake) cache, no network."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_pretrained_tag_not_in_the_cache_is_one_line_naming_the_repo(monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    _offline_cache(monkeypatch, tmp_path / "hub")
    with pytest.raises(CheckpointError) as e:
        load_adapter(f"openclip:{ARCH}", pretrained=TAG)
    message = str(e.value)
    assert "\n" not in message and "not in the Hugging Face cache" in message
    assert f"hf download {TAG_REPO} open_clip_model.safetensors" in message  # open_clip's registry gave the repo
    assert _built_nothing(caplog)


def test_pretrained_tag_loads_from_the_hf_cache(monkeypatch, tmp_path, caplog):
    """A small architecture with a pretrained tag, registered in open_clip's own registries the way its built-in
    ones are, and a random-init model of it saved as open_clip_model.safetensors in the real cache layout."""
    import open_clip
    from open_clip import pretrained as registry
    from safetensors.torch import save_file

    arch, tag, repo = "tiny-habit-test", "habittag", "testorg/tiny-habit-test"
    config = tmp_path / f"{arch}.json"
    config.write_text('{"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, '
                      '"patch_size": 16}, "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, '
                      '"heads": 2, "layers": 1}}')
    open_clip.add_model_config(config)
    mean = (0.25, 0.5, 0.75)  # the tag's own preprocessing must reach the transform
    monkeypatch.setitem(registry._PRETRAINED, arch, {tag: registry._pcfg(hf_hub=f"{repo}/", mean=mean)})
    torch.manual_seed(3)
    reference = open_clip.create_model(arch).eval()
    weights = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, weights)
    commit = _lay_out_hf_cache(tmp_path / "hub", repo, [weights])
    _offline_cache(monkeypatch, tmp_path / "hub")

    caplog.set_level(logging.INFO)
    caplog.clear()  # the reference above was built without weights, and said so
    adapter = load_adapter(f"openclip:{arch}", pretrained=tag)
    assert _built_nothing(caplog)  # built, but with its weights loaded right after: open_clip's warning is dropped
    pixels = torch.rand(2, 3, 32, 32)
    expected = reference.encode_image(pixels, normalize=True).detach().numpy()
    assert abs(adapter.encode_images(pixels) - expected).max() < 1e-5
    described = adapter.describe()
    assert described["id"] == f"openclip:{arch}/{tag}" and not described["weights"]["random_init"]
    assert (described["weights"]["hub_repo"], described["weights"]["hub_commit"]) == (repo, commit)
    assert described["weights"]["pretrained_tag"] == tag
    normalize = [t for t in adapter.transform.transforms if type(t).__name__ == "Normalize"]
    assert tuple(normalize[0].mean) == mean


def test_missing_folder_says_no_such_folder(capsys):
    for spec in ("runs/never-trained", "./gone", "~/gone-too"):
        assert _one_line_error(capsys, "--model", spec) == f"error: {spec}: no such folder"


def _clip_benchmark_dataset_names() -> set[str]:
    """The names CLIP_benchmark's build_dataset dispatches on (`dataset_name == "..."`), read from its source."""
    from clip_benchmark.datasets import builder

    tree = ast.parse(inspect.getsource(builder.build_dataset))
    return {node.comparators[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "dataset_name"
            and isinstance(node.comparators[0], ast.Constant) and isinstance(node.comparators[0].value, str)}


def test_clip_benchmark_dataset_names_are_task_aliases():
    clip_benchmark = _clip_benchmark_dataset_names()
    aliases = task_aliases()
    expected = {"imagenet1k": "imagenet", "imagenetv2": "imagenet-v2", "imagenet_sketch": "imagenet-sketch",
                "mscoco_captions": "mscoco"}
    assert expected.items() <= aliases.items()
    # Every alias is a name the peers really use: CLIP_benchmark's build_dataset, its webdataset list's vtab/ names
    # (the generated tasks' block of tasks/aliases.tsv) or a DataComp tasklist key (tasks/suites/datacomp.yaml).
    suite = yaml.safe_load((REPO / "tasks" / "suites" / "datacomp.yaml").read_text(encoding="utf-8"))
    datacomp = {entry["key"] for entry in suite["tasks"]}
    vtab = {alias for alias in aliases if alias.startswith("vtab/")}
    assert set(aliases) - clip_benchmark - datacomp - vtab == set()
    assert {"imagenet-a", "imagenet-r", "flickr30k"} <= clip_benchmark & set(named_yaml_files("tasks"))
    for alias, task in aliases.items():
        assert load_task(alias).name == task  # the results carry the task's own name
    assert load_task("linear-probe:imagenet1k").name == "linear-probe-imagenet"


def test_alias_table_problems_name_the_file_and_line(tmp_path, monkeypatch):
    tasks = tmp_path / "tasks"
    shutil.copytree(REPO / "tasks", tasks)
    table = tasks / "aliases.tsv"
    table.write_text(table.read_text() + "imagenet\timagenet-v2\tsome_suite\nimagenet-1k\timagenet\tHF\n"
                     "some_set\tno-such-task\tsome_suite\nimagenet1k\timagenet-v2\tsome_suite\nonly-two\tfields\n")
    monkeypatch.setenv("RECLIP_TASKS_DIR", str(tasks))
    with pytest.raises(ConfigError) as e:
        task_aliases()
    message, last = str(e.value), len(table.read_text().splitlines())
    assert str(table.resolve()) in message
    assert f"line {last - 4}: 'imagenet' is a task name" in message
    assert f"line {last - 2}: unknown task 'no-such-task'" in message
    assert f"line {last - 1}: 'imagenet1k' is already an alias of 'imagenet'" in message
    assert f"line {last}: expected 3 tab-separated fields" in message
    assert "imagenet-1k" not in message  # a valid row in the same file is no problem
