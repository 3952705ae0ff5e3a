"""No Hub token reaches our output, whichever source huggingface_hub takes it from, even when the server's error body
echoes the request's headers (tests/hub_server.py with echo_headers_status: every request refused, headers quoted).

Each case puts a token where huggingface_hub finds one (HF_TOKEN with a trailing newline, HUGGING_FACE_HUB_TOKEN with
spaces, the stored login file under HF_HOME, the stored-tokens file, an explicit argument), runs a fresh client (the CLI
pushing and downloading, or push_checkpoint(token=...)), and checks that the server did receive the token, that the
CLI's one-line error shows the echoed header redacted, and that no form of the token (as stored, as sent) is printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import REPO
from .hub_server import HubServer

TOKEN = "hf_redactme_0123456789abcdefXYZ"
SOURCES = {
    # name: (environment, files written under HF_HOME)
    "HF_TOKEN with a trailing newline": ({"HF_TOKEN": TOKEN + "\n"}, {}),
    "HUGGING_FACE_HUB_TOKEN with spaces": ({"HUGGING_FACE_HUB_TOKEN": f"  {TOKEN} "}, {}),
    "stored login (HF_HOME/token)": ({}, {"token": TOKEN + "\n"}),
    "stored tokens and login (hf auth login)": ({}, {"token": TOKEN + "\n",
                                                     "stored_tokens": f"[work]\nhf_token = {TOKEN}\n"}),
}
PUSH_WITH_TOKEN = textwrap.dedent("""
    import sys
    from reclip_eval.errors import ReclipError
    from reclip_eval.publish import push_checkpoint
    try:
        push_checkpoint(sys.argv[1], "org/tiny", token=sys.argv[2])
    except ReclipError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
""")


@pytest.fixture
def echoing_hub(tmp_path):
    with HubServer(tmp_path / "hub-server", echo_headers_status=403) as server:
        yield server


def _run(argv: list[str], hub: HubServer, hf_home: Path, env_tokens: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(hf_home), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="0",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", **env_tokens)
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def _assert_redacted(out: subprocess.CompletedProcess, forms: set[str]) -> None:
    printed = out.stdout + out.stderr
    leaked = sorted(form for form in forms if form.strip() and form in printed)
    assert not leaked, f"token printed: {printed}"
    assert out.returncode == 2, printed
    assert "Traceback" not in out.stderr
    # One error line (besides the CLI's INFO log of requests), quoting the echoed header with the token hidden.
    [line] = [line for line in out.stderr.splitlines() if not line.startswith("INFO ")]
    assert line.startswith("error: ") and "Bearer ***" in line, line


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("command", ["push-to-hub", "evaluate hf-hub:"])
def test_no_form_of_the_token_is_printed_when_the_server_echoes_it(source, command, echoing_hub, tiny_checkpoint,
                                                                    tmp_path):
    env_tokens, files = SOURCES[source]
    hf_home = tmp_path / "hf_home"
    hf_home.mkdir()
    for name, text in files.items():
        (hf_home / name).write_text(text)
    if command == "push-to-hub":
        argv = ["-m", "reclip_eval", "push-to-hub", str(tiny_checkpoint), "org/tiny"]
    else:
        argv = ["-m", "reclip_eval", "--model", "hf-hub:org/tiny", "--task", "shapes-zeroshot", "--data-dir",
                str(tmp_path / "data"), "--output", str(tmp_path / "results"), "--device", "cpu"]
    out = _run(argv, echoing_hub, hf_home, env_tokens)
    forms = {*env_tokens.values(), *files.values(), TOKEN}
    _assert_redacted(out, forms)
    assert echoing_hub.requests > 0, "no request reached the server"
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("token", [TOKEN, f" {TOKEN}\n"], ids=["clean", "with spaces and a newline"])
def test_an_explicit_token_argument_is_redacted_too(token, echoing_hub, tiny_checkpoint, tmp_path):
    """huggingface_hub sends an explicit token as given: with a newline the HTTP library refuses the header before
    any request and quotes it in its error, which must be redacted as the server's echo is."""
    out = _run(["-c", PUSH_WITH_TOKEN, str(tiny_checkpoint), token], echoing_hub, tmp_path / "hf_home", {})
    _assert_redacted(out, {TOKEN, token})
    assert (echoing_hub.requests > 0) == (token == TOKEN)


def test_redaction_covers_every_form_huggingface_hub_could_send(tmp_path, monkeypatch):
    """In process: the forms come from huggingface_hub's own sources (environment, HF_HOME's files, get_token)."""
    from huggingface_hub import constants

    from reclip_eval.hub import redact_tokens

    monkeypatch.setenv("HF_TOKEN", "env-token\n")
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", " legacy-token ")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "stored_tokens"))
    (tmp_path / "token").write_text("file-token\n")
    (tmp_path / "stored_tokens").write_text("[a]\nhf_token = stored-token\n")
    text = "env-token\n|env-token|legacy-token|file-token|stored-token|arg-token|kept"
    assert redact_tokens(text, token="arg-token") == "***|***|***|***|***|***|kept"
