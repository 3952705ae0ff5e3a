"""`reclip-eval train --backend jax` (issue 16): the same recipe on the flax jit step over the 8 fake CPU devices
(tests/conftest.py) follows the torch trainer step for step, writes a checkpoint the torch backend loads, resumes
exactly (token masks included), and refuses what it does not do before the run folder is touched."""

import json

import jax
import pytest
import torch
from safetensors.torch import load_file

import reclip_eval.jax_train.trainer as jax_trainer
from reclip_eval.checkpoint import load_model
from reclip_eval.jax_train.trainer import train_jax
from reclip_eval.train.loop import TrainingError, train
from reclip_eval.train.recipe import load_recipe

from .conftest import run_cli

SHORT = ["stages.0.steps=8", "stages.0.warmup_steps=2", "stages.0.batch_size=32", "stages.1.steps=4",
         "stages.1.warmup_steps=1", "save_dtype=float32"]


@pytest.fixture(scope="module")
def jax_run(synth_dir, tmp_path_factory):
    """The SHORT recipe trained once by the jax trainer: the reference several tests compare with."""
    out = tmp_path_factory.mktemp("jax-run") / "run"
    train_jax(load_recipe("tiny-shapes", SHORT), out, data_dir=synth_dir, workers=0)
    return out


def _losses(run_dir):
    return [s["losses"] for s in json.loads((run_dir / "training.json").read_text())["stages"]]


def test_jax_trainer_follows_the_torch_trainer_step_for_step(synth_dir, tmp_path, jax_run):
    assert jax.device_count() == 8  # the batch is split over a mesh of 8
    train(load_recipe("tiny-shapes", SHORT), tmp_path / "torch", data_dir=synth_dir, device="cpu", workers=0)
    (tmp_path / "jax").symlink_to(jax_run)
    # Same initial weights, batches, param groups and schedule: only float rounding differs (the losses were equal
    # to 4 decimals in a measured run; a wrong lr, decay group or upsampled embedding is off by orders more).
    for want, got in zip(_losses(tmp_path / "torch"), _losses(tmp_path / "jax"), strict=True):
        assert got == pytest.approx(want, abs=2e-4)
    torch_weights, jax_weights = load_file(tmp_path / "torch" / "model.safetensors"), \
        load_file(tmp_path / "jax" / "model.safetensors")
    assert set(torch_weights) == set(jax_weights)
    for name, tensor in torch_weights.items():
        torch.testing.assert_close(jax_weights[name], tensor, rtol=1e-3, atol=1e-4, msg=name)
    assert (tmp_path / "jax" / "config.json").read_text() == (tmp_path / "torch" / "config.json").read_text()
    record = json.loads((tmp_path / "jax" / "training.json").read_text())
    assert record["backend"] == "jax" and record["devices"] == 8 and record["device"] == "cpu"
    assert [s["image_size"] for s in record["stages"]] == [16, 32]
    assert [s["pos_embed_grid"] for s in record["stages"]] == [[2, 2], [4, 4]]
    stage = load_model(tmp_path / "jax" / "stages" / "lowres")  # the stage checkpoint, at its own size
    assert stage.config.vision.image_size == 16
    model = load_model(tmp_path / "jax")  # the torch backend reads the jax run's checkpoint
    assert model.config.vision.image_size == 32


def test_masked_jax_run_resumes_exactly(synth_dir, tmp_path, monkeypatch, jax_run):
    """Killed after a resume point (mid-stage, with FLIP masking on), resumed: the loss curve and weights are those
    of the uninterrupted run; the masks are a function of the step, not of process state."""
    recipe = load_recipe("tiny-shapes", SHORT + ["stages.0.image_tokens.kind=random", "stages.0.image_tokens.ratio=0.5",
                                                 "stages.1.image_tokens.kind=resize",
                                                 "checkpoint_every=3"])
    train_jax(recipe, tmp_path / "whole", data_dir=synth_dir, workers=0)

    real_save = jax_trainer.save_resume_point

    def killed_at(step):
        def save_then_die(*args, **kwargs):
            real_save(*args, **kwargs)
            if (kwargs["stage_index"], kwargs["step"]) == (0, step):
                raise KeyboardInterrupt
        return save_then_die

    monkeypatch.setattr(jax_trainer, "save_resume_point", killed_at(6))  # mid-stage
    with pytest.raises(KeyboardInterrupt):
        train_jax(recipe, tmp_path / "killed", data_dir=synth_dir, workers=0)
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    with pytest.raises(TrainingError, match="backend: the run was trained with --backend jax"):
        train(recipe, tmp_path / "killed", data_dir=synth_dir, device="cpu", workers=0, resume=True)
    # Resumed, then killed again after the stage's last resume point, before its stage checkpoint: the next
    # resume writes that checkpoint from the point (as the jax run's, with its record).
    monkeypatch.setattr(jax_trainer, "save_resume_point", killed_at(8))
    with pytest.raises(KeyboardInterrupt):
        train_jax(recipe, tmp_path / "killed", data_dir=synth_dir, workers=0, resume=True)
    assert not (tmp_path / "killed" / "stages" / "lowres").exists()
    monkeypatch.setattr(jax_trainer, "save_resume_point", real_save)
    train_jax(recipe, tmp_path / "killed", data_dir=synth_dir, workers=0, resume=True)
    stage_record = json.loads((tmp_path / "killed" / "stages" / "lowres" / "training.json").read_text())
    assert stage_record["backend"] == "jax" and stage_record["devices"] == 8

    whole, resumed = _losses(tmp_path / "whole"), _losses(tmp_path / "killed")
    assert resumed == whole  # exactly: XLA's CPU step is deterministic for the same inputs
    one, two = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "killed" / "model.safetensors")
    for name, tensor in one.items():
        torch.testing.assert_close(two[name], tensor, rtol=0, atol=0, msg=name)
    # The masked stage counts what it computes (fewer MACs than unmasked) and learns from other inputs.
    record = json.loads((tmp_path / "whole" / "training.json").read_text())
    plain_record = json.loads((jax_run / "training.json").read_text())
    assert record["stages"][0]["gmacs_per_sample"] < plain_record["stages"][0]["gmacs_per_sample"]
    assert record["stages"][0]["losses"] != plain_record["stages"][0]["losses"]


def test_bf16_computes_in_bfloat16_with_float32_weights(synth_dir, tmp_path, jax_run):
    recipe = load_recipe("tiny-shapes", SHORT)
    assert jax_trainer.compute_dtype(recipe, "gpu") == jax.numpy.bfloat16  # auto on a GPU, as torch autocasts
    assert jax_trainer.compute_dtype(recipe, "cpu") is None
    train_jax(load_recipe("tiny-shapes", SHORT + ["precision=bf16"]), tmp_path / "bf16", data_dir=synth_dir,
              workers=0, save_stages=False)
    full, half = _losses(jax_run)[0], _losses(tmp_path / "bf16")[0]
    assert half != full and half == pytest.approx(full, abs=0.05)  # rounded, not another computation
    assert {t.dtype for t in load_file(tmp_path / "bf16" / "model.safetensors").values()} == {torch.float32}


def test_fsdp_shards_the_large_weights_and_changes_nothing(synth_dir, tmp_path, monkeypatch, jax_run):
    import reclip_eval.jax_train.step as step

    real, specs = step.param_shardings, []

    def recording(params, mesh, **kwargs):
        shardings = real(params, mesh, **kwargs)
        specs.extend(s.spec for s in jax.tree.leaves(shardings))
        return shardings

    monkeypatch.setattr(step, "param_shardings", recording)
    train_jax(load_recipe("tiny-shapes", SHORT + ["data_parallel=fsdp"]), tmp_path / "fsdp", data_dir=synth_dir,
              workers=0, save_stages=False)
    assert jax.sharding.PartitionSpec("data", None) in specs  # the token embedding (49408 x 32), split 8 ways
    for want, got in zip(_losses(jax_run), _losses(tmp_path / "fsdp"), strict=True):
        assert got == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("override, message", [
    ("stages.0.optimizer.name=adafactor", "stages.lowres.optimizer.name: adafactor is not on the jax trainer"),
    ("stages.0.micro_batch_size=8", "stages.lowres.micro_batch_size: micro-batches are not on the jax trainer"),
    ("activation_checkpointing=true", "activation_checkpointing: not on the jax trainer"),
    ("stages.1.batch_size=12", "stages.hires.batch_size: 12 must be divisible by the 8 jax devices"),
])
def test_what_the_jax_trainer_does_not_do_is_refused_first(synth_dir, tmp_path, override, message):
    recipe = load_recipe("tiny-shapes", [override])
    with pytest.raises(TrainingError, match=message):
        train_jax(recipe, tmp_path / "run", data_dir=synth_dir, workers=0)
    assert not (tmp_path / "run").exists()


def test_device_names_are_checked():
    with pytest.raises(TrainingError, match="--device mps: the jax trainer takes auto, cpu or cuda"):
        jax_trainer.jax_devices("mps")


def test_cli_train_takes_the_jax_backend(tmp_path):
    out = run_cli("train", "tiny-shapes", "--out", str(tmp_path / "run"), "--backend", "jax",
                  "stages.0.optimizer.name=adafactor")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "stages.lowres.optimizer.name: adafactor is not on the jax trainer" in out.stderr
    assert not (tmp_path / "run").exists()


def test_loader_workers_start_from_a_fork_server_once_jax_is_imported(synth_dir, monkeypatch):
    """jax is threaded: a DataLoader forking its workers after `import jax` risks a deadlock (jax warns so at the
    fork). With jax imported the workers are forked by a fork server; the stream is the directly forked one."""
    import warnings

    import reclip_eval.distributed as distributed
    from reclip_eval.data.shards import list_shards, train_batches
    from reclip_eval.data.transforms import image_transform
    from reclip_eval.models.config import PreprocessConfig
    from reclip_eval.models.tokenizer import ClipTokenizer

    assert distributed.worker_context().get_start_method() == "forkserver"
    jax.devices()  # the backend is up (its threads run), as in a training or evaluation process
    kwargs = dict(transform=image_transform(16, PreprocessConfig()), tokenize=ClipTokenizer(16), batch_size=8,
                  seed=3, shuffle_buffer=50, workers=2)
    shards = list_shards("shapes-train", synth_dir)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r"os\.fork\(\) was called")
        served = train_batches(shards, **kwargs)
        got = [next(served) for _ in range(3)]
    monkeypatch.setattr("reclip_eval.data.shards.worker_context", lambda: None)
    with pytest.warns(RuntimeWarning, match=r"os\.fork\(\) was called"):  # what the fork server avoids
        forked = train_batches(shards, **kwargs)
        want = [next(forked) for _ in range(3)]
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_text_reduction_and_the_text_position_resize_follow_the_torch_trainer(synth_dir, tmp_path):
    """What CLIPA's recipes add on the text side, on both trainers: random text reduction to a short main-phase
    length, then the text position table resized (linear) to a longer finetune length. Same batches, same resized
    table, so the same loss curve; both record the resize."""
    overrides = [*SHORT, "text_positions=resize", "stages.0.text_length=8", "stages.0.text_tokens={kind: random}",
                 "stages.1.text_length=16"]
    train(load_recipe("tiny-shapes", overrides), tmp_path / "torch", data_dir=synth_dir, device="cpu", workers=0)
    train_jax(load_recipe("tiny-shapes", overrides), tmp_path / "jax", data_dir=synth_dir, workers=0)
    for want, got in zip(_losses(tmp_path / "torch"), _losses(tmp_path / "jax"), strict=True):
        assert got == pytest.approx(want, abs=2e-4)
    records = [json.loads((tmp_path / b / "training.json").read_text())["stages"] for b in ("torch", "jax")]
    assert [s["text_pos_embed"] for s in records[1]] == [s["text_pos_embed"] for s in records[0]]
    assert records[1][1]["text_pos_embed"] is not None and records[1][0]["text_tokens"] == "random"
    assert load_model(tmp_path / "jax").config.text.context_length == 16
