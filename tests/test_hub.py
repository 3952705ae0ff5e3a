"""Publishing on the Hub, end to end: the real huggingface_hub client against a real HTTP server (tests/hub_server.py).

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported, so every client runs in a fresh
process with its environment set; the server runs in this process, which lets a test count the requests it got.
Every client's stdout and stderr is checked for the token as it comes back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from reclip_eval.checkpoint import file_sha256, save_checkpoint
from reclip_eval.cli.main import main
from reclip_eval.models import CLIP, build_config

from .conftest import REPO
from .hub_server import HubServer

SECRET = "hf_fake_secret_123"
CHECKPOINT_FILES = {"config.json", "model.safetensors", "README.md", "recipe.yaml", "training.json",
                    "results/tiny__shapes-zeroshot.json"}

# Loads each (local dir, hf-hub spec) pair both ways and compares: the ModelAdapter evaluation uses and
# load_checkpoint (the library entry point). Prints one JSON line per pair.
COMPARE = textwrap.dedent("""
    import json, sys, numpy, torch
    from reclip_eval.checkpoint import load_checkpoint
    from reclip_eval.zoo.resolve import load_adapter, parse_hub_spec
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 32, 32)
    texts = ["a red circle", "two blue squares"]
    for local_dir, spec in json.loads(sys.argv[1]):
        local, hub = load_adapter(local_dir), load_adapter(spec)
        repo, revision = parse_hub_spec(spec)
        loaded = load_checkpoint(repo, revision=revision)
        print(json.dumps({
            "adapter_equal": numpy.array_equal(local.encode_images(pixels), hub.encode_images(pixels))
            and numpy.array_equal(local.encode_texts(texts), hub.encode_texts(texts)),
            "loader_equal": torch.equal(local.model.encode_image(pixels), loaded.encode_image(pixels)),
            "weights": hub.describe()["weights"],
        }))
""")

PUSH = textwrap.dedent("""
    import json, sys
    from reclip_eval.publish import push_checkpoint
    for directory in sys.argv[2:]:
        print(json.dumps(push_checkpoint(directory, sys.argv[1])))
""")


class Client:
    """Runs huggingface_hub clients (our CLI, or a script) in fresh processes pointed at the test server."""

    def __init__(self, hub: HubServer, hf_home: Path):
        self.hub = hub
        self.hf_home = hf_home

    def env(self, **overrides: str | None) -> dict[str, str]:
        # Nothing of the caller's Hugging Face setup (token, cache, endpoint, offline flag) leaks in.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_"))}
        env.update(HF_ENDPOINT=self.hub.url, HF_HOME=str(self.hf_home), HF_HUB_DISABLE_TELEMETRY="1",
                   HF_HUB_OFFLINE="0", HF_TOKEN=SECRET, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def run(self, argv: list[str], **env: str | None) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=self.env(**env), cwd=REPO,
                             timeout=300)
        assert SECRET not in out.stdout and SECRET not in out.stderr, "the token was printed"
        return out

    def cli(self, *args: str | Path, **env: str | None) -> subprocess.CompletedProcess:
        return self.run(["-m", "reclip_eval", *map(str, args)], **env)

    def python(self, script: str, *args: str, **env: str | None) -> subprocess.CompletedProcess:
        return self.run(["-c", script, *args], **env)

    def push(self, repo_id: str, *directories: Path, **env: str | None) -> list[dict]:
        out = self.python(PUSH, repo_id, *map(str, directories), **env)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    def compare(self, pairs: list[tuple[Path, str]], **env: str | None) -> list[dict]:
        out = self.python(COMPARE, json.dumps([[str(d), spec] for d, spec in pairs]), **env)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.fixture
def hub(tmp_path):
    with HubServer(tmp_path / "hub-server") as server:
        yield server


@pytest.fixture
def client(hub, tmp_path) -> Client:
    return Client(hub, tmp_path / "hf_home")


def _full_checkpoint(tiny_checkpoint: Path, dest: Path) -> Path:
    """The tiny checkpoint with every published kind of file, plus files that must stay local."""
    shutil.copytree(tiny_checkpoint, dest)
    (dest / "README.md").write_text("---\nlibrary_name: reclip-eval\nlicense: apache-2.0\n---\n# tiny\n")
    (dest / "recipe.yaml").write_text("name: tiny-shapes\n")
    (dest / "training.json").write_text('{"recipe": "tiny-shapes", "stages": []}\n')
    (dest / "results").mkdir()
    (dest / "results" / "tiny__shapes-zeroshot.json").write_text('{"metrics": {"top1": 0.5}}\n')
    (dest / "notes.txt").write_text("local notes\n")
    (dest / "resume").mkdir()
    (dest / "resume" / "step-10.safetensors").write_bytes(b"resume point")
    return dest


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every entry under `directory`: files with their bytes and mtime, folders as None."""
    return {p.relative_to(directory).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
            for p in sorted(directory.rglob("*"))}


def _commit_posts(hub: HubServer, repo_id: str) -> int:
    return sum(line.startswith(f"POST /api/models/{repo_id}/commit/") for line in hub.log)


def _line(stdout: str, prefix: str) -> str:
    return next(line[len(prefix):].strip() for line in stdout.splitlines() if line.startswith(prefix))


def test_push_download_and_offline_round_trip(hub, client, tiny_checkpoint, tmp_path):
    """push -> one commit of exactly the checkpoint's files -> fresh-cache download byte-identical -> same
    embeddings (adapter and load_checkpoint) -> offline from the cache with zero requests."""
    ckpt = _full_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    before = _snapshot(ckpt)
    out = client.cli("push-to-hub", ckpt, "org/tiny", "--commit-message", "first upload")
    assert out.returncode == 0, out.stderr
    sha = _line(out.stdout, "commit:")
    assert _line(out.stdout, "url:") == f"{hub.url}/org/tiny/commit/{sha}"
    assert _commit_posts(hub, "org/tiny") == 1
    head, files = hub.store.files_at("org/tiny", "main")
    assert head == sha and set(files) == CHECKPOINT_FILES | {".gitattributes"}  # no notes.txt, no resume/
    assert hub.store.load("org/tiny")["commits"][sha]["summary"] == "first upload"
    assert _snapshot(ckpt) == before  # the push only read the directory

    [loaded] = client.compare([(ckpt, "hf-hub:org/tiny")])
    assert loaded["adapter_equal"] and loaded["loader_equal"]
    weights = loaded["weights"]
    assert (weights["hub_repo"], weights["hub_revision"], weights["hub_commit"]) == ("org/tiny", "main", sha)
    snapshot = Path(weights["path"])
    assert snapshot.is_relative_to(client.hf_home)  # downloaded into the fresh cache
    for name in CHECKPOINT_FILES:
        assert (snapshot / name).read_bytes() == (ckpt / name).read_bytes(), name

    requests = hub.requests
    [offline] = client.compare([(ckpt, "hf-hub:org/tiny")], HF_HUB_OFFLINE="1")
    assert offline["adapter_equal"] and offline["loader_equal"] and offline["weights"]["hub_commit"] == sha
    assert hub.requests == requests, hub.log[requests:]


def test_generated_card_and_results_pin_the_commit(hub, client, tiny_checkpoint, synth_dir, tmp_path):
    """A checkpoint without README.md gets a rendered card (the directory is left without one); evaluating
    hf-hub:org/name writes the commit sha into the results JSON."""
    [pushed] = client.push("org/tiny", tiny_checkpoint)
    assert pushed["files"] == ["README.md", "config.json", "model.safetensors"] and pushed["changed"]
    assert pushed["commit_url"] == f"{hub.url}/org/tiny/commit/{pushed['commit_sha']}" and pushed["deleted"] == []
    assert not (tiny_checkpoint / "README.md").exists()
    _, files = hub.store.files_at("org/tiny", "main")
    card = hub.store.blob(files["README.md"]).decode()
    assert card.startswith("---\n") and "library_name: reclip-eval" in card and "# org/tiny" in card

    out = client.cli("--model", "hf-hub:org/tiny", "--task", "shapes-retrieval", "--data-dir", synth_dir,
                     "--output", tmp_path / "results", "--workers", "0", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    [path] = (tmp_path / "results").glob("*.json")
    weights = json.loads(path.read_text())["model"]["weights"]
    assert weights["hub_commit"] == pushed["commit_sha"]
    assert (weights["hub_repo"], weights["hub_revision"]) == ("org/tiny", "main")
    assert weights["sha256"] == file_sha256(tiny_checkpoint / "model.safetensors")


def test_second_push_is_a_new_commit_and_the_first_sha_still_loads(hub, client, tiny_checkpoint, tmp_path):
    first = _full_checkpoint(tiny_checkpoint, tmp_path / "first")
    torch.manual_seed(7)
    second = save_checkpoint(CLIP(build_config("tiny")), tmp_path / "second")
    one, two, again = client.push("org/tiny", first, second, second)
    assert one["changed"] and two["changed"] and two["commit_sha"] != one["commit_sha"]
    # The second checkpoint has no recipe/training/results: the stale ones go in the same commit.
    assert two["deleted"] == ["recipe.yaml", "results/tiny__shapes-zeroshot.json", "training.json"]
    assert not again["changed"] and again["commit_sha"] == two["commit_sha"]  # nothing new: no commit
    assert _commit_posts(hub, "org/tiny") == 2
    assert "results/tiny__shapes-zeroshot.json" in hub.store.files_at("org/tiny", one["commit_sha"])[1]

    old, new = client.compare([(first, f"hf-hub:org/tiny@{one['commit_sha']}"), (second, "hf-hub:org/tiny")])
    assert old["adapter_equal"] and old["loader_equal"] and old["weights"]["hub_commit"] == one["commit_sha"]
    assert new["adapter_equal"] and new["loader_equal"] and new["weights"]["hub_commit"] == two["commit_sha"]


def test_unreachable_hub_is_one_clear_line_and_changes_nothing(hub, client, tiny_checkpoint, tmp_path):
    ckpt = _full_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    before = _snapshot(ckpt)
    hub.stop()
    out = client.cli("push-to-hub", ckpt, "org/tiny")
    assert out.returncode == 2 and out.stdout == ""
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"error: hf-hub:org/tiny: creating the repository failed: cannot reach {hub.url} (")
    assert line.endswith("nothing was published") and "Traceback" not in out.stderr
    assert _snapshot(ckpt) == before

    script = textwrap.dedent("""
        import sys
        from reclip_eval.publish import push_checkpoint
        try:
            push_checkpoint(sys.argv[1], "org/tiny")
        except Exception as e:
            print(type(e).__name__, type(e).__mro__[1].__name__)
    """)
    assert client.python(script, str(ckpt)).stdout.split() == ["HubError", "ReclipError"]
    assert _snapshot(ckpt) == before


def test_token_is_read_like_huggingface_hub_and_never_leaks(hub, client, tiny_checkpoint, synth_dir, tmp_path):
    """HF_TOKEN is what the server receives; it appears in no output, log, card or file written, even with
    huggingface_hub's debug logging on. Also: --private and --revision (a new branch; main untouched)."""
    ckpt = _full_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    out = client.cli("push-to-hub", ckpt, "org/tiny", "--private", "--revision", "dev", HF_DEBUG="1",
                     HF_HUB_VERBOSITY="debug")
    assert out.returncode == 0, out.stderr
    assert "<TOKEN>" in out.stderr  # the debug log did print the requests, with the token hidden
    assert hub.tokens_seen == {SECRET}
    assert hub.store.load("org/tiny")["private"]
    assert set(hub.store.files_at("org/tiny", "main")[1]) == {".gitattributes"}
    assert set(hub.store.files_at("org/tiny", "dev")[1]) == CHECKPOINT_FILES | {".gitattributes"}

    # A private repo: reading it needs the token too.
    out = client.cli("--model", "hf-hub:org/tiny@dev", "--task", "shapes-retrieval", "--data-dir", synth_dir,
                     "--output", tmp_path / "results", "--workers", "0", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    [results] = (tmp_path / "results").glob("*.json")
    weights = json.loads(results.read_text())["model"]["weights"]
    assert (weights["hub_revision"], weights["hub_commit"]) == ("dev", hub.store.files_at("org/tiny", "dev")[0])

    anonymous = client.cli("push-to-hub", ckpt, "org/tiny", HF_TOKEN=None)
    assert anonymous.returncode == 2
    assert "creating the repository failed" in anonymous.stderr and "HTTP 401" in anonymous.stderr
    assert "HF_TOKEN" in anonymous.stderr and len(anonymous.stderr.strip().splitlines()) == 1

    # Everything this test wrote: the checkpoint, the HF cache, the results, the class cache, the server's storage.
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.is_relative_to(client.hf_home) for p in written) and results in written
    assert [p for p in written if SECRET.encode() in p.read_bytes()] == []


def test_push_model_from_memory(hub, client):
    script = textwrap.dedent("""
        import torch
        from reclip_eval.checkpoint import load_checkpoint
        from reclip_eval.models import CLIP, build_config
        from reclip_eval.publish import push_model
        torch.manual_seed(3)
        model = CLIP(build_config("tiny"))
        info = push_model(model, "org/other", commit_message="model upload")
        loaded = load_checkpoint("org/other")
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
        print(info["commit_sha"])
    """)
    out = client.python(script)
    assert out.returncode == 0, out.stderr
    sha, files = hub.store.files_at("org/other", "main")
    assert out.stdout.split() == [sha] and {"config.json", "model.safetensors", "README.md"} <= set(files)
    assert json.loads(hub.store.blob(files["config.json"]))["architecture"] == "reclip-clip"


def test_not_a_checkpoint_is_refused_before_any_request(tmp_path, capsys):
    """Local checks run first: these fail in this process, where HF_ENDPOINT is the real (unreachable) Hub."""
    (tmp_path / "notes").mkdir()
    assert main(["push-to-hub", str(tmp_path / "notes"), "org/x"]) == 2
    assert f"{tmp_path / 'notes' / 'config.json'}: missing" in capsys.readouterr().err

    save_checkpoint(CLIP(build_config("tiny")), tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["push-to-hub", str(tmp_path / "ck"), "org/x"]) == 2
    assert f"{weights}: not a readable safetensors file" in capsys.readouterr().err

    assert main(["push-to-hub", str(tmp_path / "ck"), "just-a-name"]) == 2
    assert "'just-a-name': expected a Hub model repo id of the form 'org/name'" in capsys.readouterr().err
    assert main(["push-to-hub", str(tmp_path / "ck"), "org/x", "--revision", "a" * 40]) == 2
    assert "is a commit sha; a push goes to a branch name" in capsys.readouterr().err


def test_push_to_hub_is_listed(capsys):
    assert main(["--help"]) == 0
    assert "push-to-hub" in capsys.readouterr().out
