"""The command line as users run it (fresh processes), including every bad-input message."""

import json

import pytest

from reclip_eval.cli.main import main
from reclip_eval.errors import MissingWeightsError, UnknownNameError
from reclip_eval.zoo.resolve import load_adapter

from .conftest import run_cli

PAPER_MODELS = ["clip-repro-224", "reclip-112", "reclip-80", "reclip-64", "reclip-64-f20k"]


def test_models_lists_every_named_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in PAPER_MODELS + ["reclip-demo"]:
        assert name in out


def test_unknown_model_lists_known_ones():
    with pytest.raises(UnknownNameError) as e:
        load_adapter("reclip-46")
    assert "unknown model 'reclip-46'. Did you mean: reclip-64" in str(e.value)
    assert "reclip-demo" in str(e.value) and "reclip-eval models" in str(e.value)


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_model_without_weights_says_how_to_get_them(name):
    with pytest.raises(MissingWeightsError) as e:
        load_adapter(name)
    message = str(e.value)
    assert f"reclip-eval train {name}" in message and "--checkpoint DIR" in message and "hf-hub:org/name" in message


def test_checkpoint_of_another_architecture_is_refused(tiny_checkpoint):
    from reclip_eval.errors import CheckpointError

    with pytest.raises(CheckpointError, match="is not a reclip-64 checkpoint"):
        load_adapter("reclip-64", checkpoint=str(tiny_checkpoint))


def test_cli_error_exit_code_and_message(capsys):
    assert main(["--model", "nope", "--task", "shapes-zeroshot"]) == 2
    assert "error: unknown model 'nope'" in capsys.readouterr().err
    assert main(["--model", "reclip-demo", "--task", "shapes-zeroshott"]) == 2
    assert "Did you mean: shapes-zeroshot" in capsys.readouterr().err


def test_eval_subprocess_writes_results(tiny_checkpoint, synth_dir, tmp_path):
    out = run_cli("--model", str(tiny_checkpoint), "--task", "shapes-zeroshot,shapes-retrieval",
                  "--data-dir", str(synth_dir), "--output", str(tmp_path / "res"), "--workers", "0",
                  env={"RECLIP_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    assert any("shapes-zeroshot" in line and "top1" in line for line in out.stdout.splitlines())
    assert "i2t_R@1" in out.stdout
    files = sorted(p.name for p in (tmp_path / "res").glob("*.json"))
    assert len(files) == 2 and all(f.endswith(("__shapes-zeroshot.json", "__shapes-retrieval.json")) for f in files)


def test_resolution_sweep_writes_one_result_per_size(tiny_checkpoint, synth_dir, tmp_path):
    out = run_cli("--model", str(tiny_checkpoint), "--task", "shapes-retrieval", "--data-dir", str(synth_dir),
                  "--output", str(tmp_path / "res"), "--workers", "0", "--image-size", "16,32,48",
                  env={"RECLIP_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    files = sorted(p.name for p in (tmp_path / "res").glob("*.json"))
    assert [f.rsplit("__", 1)[1] for f in files] == ["16px.json", "32px.json", "48px.json"]
    sizes = [json.loads((tmp_path / "res" / f).read_text())["model"]["image_size"] for f in files]
    assert sizes == [16, 32, 48]
    assert run_cli("--model", "x", "--task", "y", "--image-size", "64,big").returncode == 2


def test_train_and_config_subcommands(synth_dir, tmp_path, capsys):
    assert main(["config", "show", "tiny-shapes", "stages.0.steps=7"]) == 0
    assert "steps: 7" in capsys.readouterr().out
    code = main(["train", "tiny-shapes", "--out", str(tmp_path / "run"), "--data-dir", str(synth_dir),
                 "stages.0.steps=2", "stages.0.warmup_steps=0", "stages.1.steps=1", "stages.1.warmup_steps=0",
                 "--device", "cpu", "--workers", "0"])
    assert code == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["vision"]["image_size"] == 32
    assert main(["train", "tiny-shapes", "--out", str(tmp_path / "r2"), "stages.0.stepz=2"]) == 2
    assert "stages[0].stepz: unknown key; did you mean 'steps'?" in capsys.readouterr().err


def test_data_synth_subcommand(tmp_path):
    out = run_cli("data", "synth", "--out", str(tmp_path), "--sets", "zeroshot", "--zeroshot-per-class", "1",
                  "--image-size", "32", "--workers", "1")
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "shapes-zeroshot" / "val").iterdir())) == 36
