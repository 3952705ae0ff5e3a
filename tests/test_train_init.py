"""Training from a checkpoint (#34 item 6): a recipe's `init:` on both trainers, from an open_clip ViT checkpoint
(converted into our model; open_clip's own forward is the oracle), from a big_vision tree and from our own
checkpoints; the position table resampled by the one resampler; refusals; the record; exact resume."""

import json

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import load_file, save_file

import reclip_eval.train.loop as torch_loop
from reclip_eval.cards.render import render_card
from reclip_eval.checkpoint import file_sha256, load_model, save_checkpoint
from reclip_eval.errors import CheckpointError, ConfigError
from reclip_eval.jax_train.trainer import train_jax
from reclip_eval.models.clip import CLIP
from reclip_eval.models.pos_embed import resample_pos_embed, resample_text_pos_embed
from reclip_eval.train.init_from import InitConfig
from reclip_eval.train.loop import TrainingError, train
from reclip_eval.train.recipe import load_recipe
from reclip_eval.train.stage_setup import build_model
from reclip_eval.zoo.init_weights import load_init
from reclip_eval.zoo.resolve import load_adapter

from .conftest import die_after_resume_points, run_cli
from .test_big_vision_import import BIG_VISION, _random_params


def _with_init(trainer):
    """`trainer` as `reclip-eval train` calls it: the recipe's init weights loaded through the zoo first."""
    def run(recipe, out, **kwargs):
        return trainer(recipe, out, init=load_init(recipe.init) if recipe.init is not None else None, **kwargs)

    return run


train_from, train_jax_from = _with_init(train), _with_init(train_jax)

# tiny-shapes cut to a few steps: stage 0 at 16 px (the checkpoints' 32 px grid of 4x4 resampled to 2x2), then 32 px.
SHORT = ["model=null", "stages.0.steps=3", "stages.0.warmup_steps=1", "stages.0.batch_size=16", "stages.1.steps=2",
         "stages.1.warmup_steps=0", "save_dtype=float32", "tensorboard=false"]
ARCH = "reclip-test-init"
# big_vision's model config of the BIG_VISION tree: what its weights cannot tell (class-token image pool, last-token
# text pool).
TOK_LAST = {"image": {"pool_type": "tok"}, "text": {"pool_type": "last"}}
OPEN_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}


def _register(folder, name, config):
    (folder / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(str(folder / f"{name}.json"))


@pytest.fixture(scope="module")
def open_clip_file(tmp_path_factory):
    """A tiny open_clip ViT CLIP (its own random init, biases and norms perturbed), saved as safetensors."""
    folder = tmp_path_factory.mktemp("openclip-init")
    _register(folder, ARCH, OPEN_CLIP)
    torch.manual_seed(0)
    model, _, _ = open_clip.create_model_and_transforms(ARCH, pretrained=None)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.05)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "weights.safetensors"))
    return model.eval(), folder / "weights.safetensors"


@pytest.fixture(scope="module")
def converted_copy(open_clip_file, tmp_path_factory):
    """The open_clip checkpoint converted into our model and saved as our checkpoint folder."""
    weights = load_init(InitConfig(f"openclip:{ARCH}", checkpoint=str(open_clip_file[1])))
    with torch.device("meta"):
        model = CLIP(weights.config)
    model.load_state_dict(weights.state, assign=True)
    folder = tmp_path_factory.mktemp("converted") / "ours"
    save_checkpoint(model, folder)
    return folder


def _init_args(open_clip_file):
    return [f"init.model=openclip:{ARCH}", f"init.checkpoint={open_clip_file[1]}"]


def _record(run):
    return json.loads((run / "training.json").read_text())


def _losses(run):
    return [s["losses"] for s in _record(run)["stages"]]


def _same_weights(a, b, **tolerance):
    one, two = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert set(one) == set(two)
    for name, tensor in one.items():
        torch.testing.assert_close(two[name], tensor, msg=name, **(tolerance or {"rtol": 0, "atol": 0}))


def test_converted_open_clip_embeds_as_open_clip(open_clip_file, converted_copy):
    """The oracle: open_clip's own forward on the same pixels and tokens (at the checkpoint's own size)."""
    model, _ = open_clip_file
    ours = load_model(converted_copy)
    g = torch.Generator().manual_seed(3)
    pixels = torch.randn(4, 3, 32, 32, generator=g)
    tokens = open_clip.get_tokenizer(ARCH)(["a red circle", "two blue squares in a row", "x", ""])
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_image(pixels), model.encode_image(pixels, normalize=True),
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.encode_text(tokens), model.encode_text(tokens, normalize=True),
                                   rtol=0, atol=1e-5)
        assert float(ours.logit_scale) == float(model.logit_scale)


def test_finetune_from_open_clip_equals_our_converted_copy_torch(synth_dir, tmp_path, open_clip_file,
                                                                 converted_copy):
    for name, init in (("open_clip", _init_args(open_clip_file)), ("ours", [f"init={converted_copy}"])):
        train_from(load_recipe("tiny-shapes", SHORT + init), tmp_path / name, data_dir=synth_dir, device="cpu", workers=0)
    assert _losses(tmp_path / "open_clip") == _losses(tmp_path / "ours")
    _same_weights(tmp_path / "open_clip", tmp_path / "ours")
    # Not the seed's model: the run started from the checkpoint (a seeded tiny model is another architecture).
    assert load_model(tmp_path / "ours").config.vision.width == OPEN_CLIP["vision_cfg"]["width"]


def test_finetune_from_open_clip_equals_our_converted_copy_jax(synth_dir, tmp_path, open_clip_file, converted_copy):
    for name, init in (("open_clip", _init_args(open_clip_file)), ("ours", [f"init={converted_copy}"])):
        train_jax_from(load_recipe("tiny-shapes", SHORT + init), tmp_path / name, data_dir=synth_dir, workers=0)
    assert _losses(tmp_path / "open_clip") == _losses(tmp_path / "ours")
    _same_weights(tmp_path / "open_clip", tmp_path / "ours")


@pytest.fixture(scope="module")
def big_vision_tree(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bv")
    np.savez(folder / "tree.npz", **_random_params(BIG_VISION))
    return folder / "tree.npz"


def test_finetune_from_a_big_vision_tree_on_both_trainers(synth_dir, tmp_path, big_vision_tree):
    (tmp_path / "model.json").write_text(json.dumps(TOK_LAST))  # what the tree's weights cannot tell
    init = [f"init.model=big_vision:{big_vision_tree}", f"init.model_config={tmp_path / 'model.json'}"]
    recipe = load_recipe("tiny-shapes", SHORT + init)
    # The first stage starts from the tree's weights as the evaluator imports them at that stage's size.
    built = build_model(recipe, load_init(recipe.init))
    imported = load_adapter(f"big_vision:{big_vision_tree}", image_size=16, model_config=TOK_LAST).model
    assert built.config == imported.config and built.config.text.pool == "last"  # the tree's architecture
    for name, tensor in imported.state_dict().items():
        assert torch.equal(built.state_dict()[name], tensor), name
    train_from(recipe, tmp_path / "torch", data_dir=synth_dir, device="cpu", workers=0)
    train_jax_from(recipe, tmp_path / "jax", data_dir=synth_dir, workers=0)
    for want, got in zip(_losses(tmp_path / "torch"), _losses(tmp_path / "jax"), strict=True):
        assert got == pytest.approx(want, abs=2e-4)
    _same_weights(tmp_path / "torch", tmp_path / "jax", rtol=1e-3, atol=1e-4)
    assert _record(tmp_path / "jax")["init"]["sha256"] == file_sha256(big_vision_tree)


def test_position_table_goes_through_the_one_resampler(open_clip_file, caplog):
    model, path = open_clip_file
    table = model.visual.positional_embedding.detach()  # (1 + 4x4, width): the checkpoint's 32 px grid
    for size, grid in ((16, 2), (32, 4), (48, 6)):
        recipe = load_recipe("tiny-shapes", SHORT + _init_args(open_clip_file) + [f"stages.0.image_size={size}"])
        caplog.clear()
        with caplog.at_level("INFO"):
            built = build_model(recipe, load_init(recipe.init))
        mode = built.config.pos_embed_resample
        want = resample_pos_embed(table, (4, 4), (grid, grid), num_prefix=1, mode=mode.mode,
                                  align_corners=mode.align_corners, antialias=mode.antialias)
        torch.testing.assert_close(built.visual.pos_embed.detach()[0], want, rtol=0, atol=0)
        assert built.config.vision.image_size == size
        resampled = [r.getMessage() for r in caplog.records if "resampling visual.pos_embed" in r.getMessage()]
        assert resampled == ([] if grid == 4 else [f"init openclip:{ARCH}: resampling visual.pos_embed 4x4 -> "
                                                   f"{grid}x{grid} (bilinear, align_corners=True, antialias=False)"])
    # text_positions: resize gives the table the first stage's text length, through the text resampler
    recipe = load_recipe("tiny-shapes", SHORT + _init_args(open_clip_file) + ["text_positions=resize"])
    built = build_model(recipe, load_init(recipe.init))
    torch.testing.assert_close(built.text.pos_embed.detach(),
                               resample_text_pos_embed(model.positional_embedding.detach()[None], 16), rtol=0, atol=0)


def test_refusals_name_what(synth_dir, tmp_path, open_clip_file, converted_copy):
    folder = open_clip_file[1].parent
    _register(folder, "reclip-test-quick", {**OPEN_CLIP, "quick_gelu": True})
    _register(folder, "reclip-test-avgpool", {**OPEN_CLIP, "vision_cfg": {**OPEN_CLIP["vision_cfg"],
                                                                            "pool_type": "avg"}})
    cases = [
        (["init.model=openclip:reclip-test-quick", f"init.checkpoint={open_clip_file[1]}"],
         CheckpointError, r"init openclip:reclip-test-quick: image tower activation is QuickGELU"),
        (["init.model=openclip:reclip-test-avgpool", f"init.checkpoint={open_clip_file[1]}"],
         CheckpointError, r"open_clip image pool_type 'avg': not in the trainers' model"),
        # a stated model must agree with the checkpoint's: each differing key named
        ([f"init={converted_copy}", "model.preset=tiny"], ConfigError,
         r"model\.vision\.width: the recipe says 32, init .* has 64"),
        ([f"init={converted_copy}", "stages.0.image_size=20"], ConfigError,
         r"stages\.lowres\.image_size: 20 is not a multiple of the model's patch size 8"),
        ([f"init={converted_copy}", "stages.0.text_length=78", "stages.1.text_length=16"], ConfigError,
         r"stages\.lowres\.text_length: 78 exceeds the model's context_length 77"),
        ([f"init={tmp_path / 'nowhere'}"], CheckpointError, r"no such folder"),
    ]
    for overrides, error, message in cases:
        with pytest.raises(error, match=message):
            train_from(load_recipe("tiny-shapes", SHORT + overrides), tmp_path / "run", data_dir=synth_dir,
                  device="cpu", workers=0)
        assert not (tmp_path / "run").exists()  # refused before the run folder was touched
    with pytest.raises(ConfigError, match=r"model: required key is missing \(or init"):
        load_recipe("tiny-shapes", ["model=null"])
    # on the command line: exit 2 and one line naming the init and what it holds; an open_clip folder this time
    quick = tmp_path / "quick-folder"
    quick.mkdir()
    (quick / "open_clip_config.json").write_text(json.dumps({"model_cfg": {**OPEN_CLIP, "quick_gelu": True},
                                                            "preprocess_cfg": {}}))
    (quick / "open_clip_model.safetensors").write_bytes(open_clip_file[1].read_bytes())
    result = run_cli("train", "tiny-shapes", "--out", str(tmp_path / "cli"), "--data-dir", str(synth_dir), *SHORT,
                     f"init={quick}")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and f"init {quick}: image tower activation is QuickGELU" in errors[0], result.stderr
    assert not (tmp_path / "cli").exists()


def test_transformers_models_are_refused(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    from .test_peers_adapters import _write_clip_tokenizer

    config = CLIPConfig(text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                     "num_attention_heads": 2},
                        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                        projection_dim=16)
    CLIPModel(config).save_pretrained(str(tmp_path / "hf"))
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        str(tmp_path / "hf"))
    _write_clip_tokenizer(tmp_path / "hf")
    with pytest.raises(CheckpointError, match=r"^init hf:.*: a hf_transformers CLIPModel model, which the trainers cannot hold"):
        load_init(InitConfig(f"hf:{tmp_path / 'hf'}"))


def test_training_json_and_card_record_the_source(synth_dir, tmp_path, open_clip_file):
    recipe = load_recipe("tiny-shapes", SHORT + _init_args(open_clip_file) + ["stages.1.steps=1"])
    train_from(recipe, tmp_path / "run", data_dir=synth_dir, device="cpu", workers=0)
    for folder in (tmp_path / "run", tmp_path / "run" / "stages" / "lowres"):
        init = _record(folder)["init"]
        assert init["model"] == f"openclip:{ARCH}" and init["checkpoint"] == str(open_clip_file[1])
        assert init["sha256"] == file_sha256(open_clip_file[1]) and init["family"] == "open_clip"
    card = render_card(model_name="x", config=load_model(tmp_path / "run").config,
                       training=_record(tmp_path / "run"))
    assert f"Started from `openclip:{ARCH}` (weights sha256 `{file_sha256(open_clip_file[1])}`)" in card
    assert "init:" in (tmp_path / "run" / "recipe.yaml").read_text()


def test_a_run_from_init_resumes_exactly(synth_dir, tmp_path, monkeypatch, converted_copy):
    """Killed after its second resume point, resumed: the loss curve and weights are the uninterrupted run's (the
    init is applied at step 0 only); a resume whose init weights changed since is refused."""
    init = tmp_path / "init"
    init.symlink_to(converted_copy, target_is_directory=True)
    recipe = load_recipe("tiny-shapes", SHORT + [f"init={init}", "checkpoint_every=2", "stages.0.steps=5"])
    train_from(recipe, tmp_path / "whole", data_dir=synth_dir, device="cpu", workers=0)
    die_after_resume_points(monkeypatch, torch_loop, 2)  # stage 0 step 4
    with pytest.raises(RuntimeError, match="power cut"):
        train_from(recipe, tmp_path / "killed", data_dir=synth_dir, device="cpu", workers=0)
    monkeypatch.undo()
    other = tmp_path / "other-init"
    model = load_model(converted_copy)
    with torch.no_grad():
        model.logit_scale.add_(0.5)
    save_checkpoint(model, other)
    init.unlink()
    init.symlink_to(other, target_is_directory=True)
    with pytest.raises(TrainingError, match=r"init: the run started from weights [0-9a-f]{64}, this one's init"):
        train_from(recipe, tmp_path / "killed", data_dir=synth_dir, device="cpu", workers=0, resume=True)
    init.unlink()
    init.symlink_to(converted_copy, target_is_directory=True)
    train_from(recipe, tmp_path / "killed", data_dir=synth_dir, device="cpu", workers=0, resume=True)
    for want, got in zip(_losses(tmp_path / "whole"), _losses(tmp_path / "killed"), strict=True):
        assert got == pytest.approx(want, abs=2e-4)
    _same_weights(tmp_path / "whole", tmp_path / "killed", rtol=1e-4, atol=1e-5)


def test_init_weights_are_loaded_by_the_caller(synth_dir, tmp_path, converted_copy):
    """The trainers sit below the zoo: train() takes the weights load_init gave, and says so when they are missing
    or belong to another init."""
    recipe = load_recipe("tiny-shapes", SHORT + [f"init={converted_copy}"])
    with pytest.raises(ConfigError, match=r"init: .*its weights are loaded first: .*load_init\(recipe.init\)"):
        train(recipe, tmp_path / "run", data_dir=synth_dir, device="cpu", workers=0)
    plain = load_recipe("tiny-shapes", SHORT[1:])  # SHORT[0] drops the model for the init's
    with pytest.raises(ConfigError, match="the recipe names no init"):
        train(plain, tmp_path / "run", data_dir=synth_dir, device="cpu", workers=0, init=load_init(recipe.init))
    assert not (tmp_path / "run").exists()
