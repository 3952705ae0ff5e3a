"""Shared fixtures. Every test runs offline, with caches and outputs in temp dirs."""

from __future__ import annotations

import os
from pathlib import Path

# Under pytest-xdist (pyproject's addopts: two worker processes), each worker gets its share of the cores for
# torch's and OpenMP's thread pools, set before torch loads so that the subprocesses tests start (the CLI, torchrun)
# inherit it. Two workers that each spread over every core oversubscribe them: the suite took 1485 s that way on a
# 2-core machine, 403 s with one thread per worker (a clean-clone CI run, nothing else running).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, _threads)

import jax  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # in case a plugin imported torch before the variable was set
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Eight CPU devices for the JAX sharding tests (tests/test_jax_train.py); must come before any jax operation.
jax.config.update("jax_num_cpu_devices", 8)
# The persistent compilation cache in the user's cache folder (read here, before the fixture below points
# RECLIP_CACHE at a temporary folder), so that a second test run, CI's included, reuses the compiled programs.
from reclip_eval.flax_models.compile_cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("RECLIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RECLIP_DATA", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    torch.manual_seed(0)


# Syntax text reduction tags words with a part-of-speech tagger whose data pip cannot install (Debian's WordNet, or
# NLTK's tagger data, which cannot be downloaded on this project's machines). Tests marked `tagger` skip without it,
# saying how to install it, so that `pytest -q` passes after `pip install -e '.[dev]'` alone; .ci/run installs
# WordNet afterwards and runs them with `-m tagger` and RECLIP_REQUIRE_TAGGER=1, where a skip would fail instead.
TAGGER_INSTALL = "apt-get install wordnet-base wordnet-sense-index"


def pytest_configure(config):
    config.addinivalue_line("markers", "tagger(name=None): needs a part-of-speech tagger (any, or the one named) for "
                                       f"syntax text reduction; skipped without one ({TAGGER_INSTALL})")


@pytest.fixture(autouse=True)
def _tagger_installed(request, _isolated_env):
    """Skip (or, under RECLIP_REQUIRE_TAGGER=1, fail) a test marked `tagger` when the tagger it needs cannot load."""
    marker = request.node.get_closest_marker("tagger")
    if marker is None:
        return
    from reclip_eval.data.syntax_tags import resolve_tagger
    from reclip_eval.errors import ReclipError

    name = marker.args[0] if marker.args else None
    try:
        resolve_tagger(name)
    except ReclipError as e:
        reason = f"needs a part-of-speech tagger ({name or 'any'}) and none is installed: {TAGGER_INSTALL}"
        if os.environ.get("RECLIP_REQUIRE_TAGGER") == "1":
            pytest.fail(f"{reason} ({e})")
        pytest.skip(reason)


def task_world(task: str = "shapes-zeroshot") -> dict:
    """The world options (fine texture, caption grammar) of a synthetic task: a set made for another world is
    regenerated when a task finds it (export.made_by_current_generator), so test sets are drawn from this one."""
    from reclip_eval.data.synth.export import WORLD_SETTINGS
    from reclip_eval.eval.tasks import load_task

    synth = load_task(task).synth
    return {name: getattr(synth, name) for name in WORLD_SETTINGS}


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A small synthetic world in the real layouts (shards, ImageNet folders, Karpathy JSON)."""
    from reclip_eval.data.synth.export import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("synth")
    config = SynthConfig(seed=3, image_size=64, train_samples=600, samples_per_shard=300, zeroshot_per_class=3,
                         retrieval_images=30, **task_world())
    synthesize(out, config, sets=["train", "zeroshot", "retrieval"], workers=2)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised tiny model saved as a checkpoint directory."""
    from reclip_eval.checkpoint import save_checkpoint
    from reclip_eval.models import CLIP, build_config

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(CLIP(build_config("tiny")), path)
    return path


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None):
    """Run the installed console script in a subprocess (a real fresh process, as users run it)."""
    import subprocess
    import sys

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "reclip_eval", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=600)


class PowerCut(RuntimeError):
    """What `die_after_resume_points` raises: the run ends as a killed one would, its resume points on disk."""


def die_after_resume_points(monkeypatch, module, count: int) -> None:
    """Make `module`'s trainer (the torch loop or the jax trainer) raise PowerCut right after it has written its
    `count`-th resume point; `monkeypatch.undo()` restores it for the resumed run."""
    real_save, saves = module.save_resume_point, []

    def save_then_die(*args, **kwargs):
        saves.append(real_save(*args, **kwargs))
        if len(saves) == count:
            raise PowerCut("power cut")
        return saves[-1]

    monkeypatch.setattr(module, "save_resume_point", save_then_die)
