"""Where I/O lives (issue #13): models/ is pure torch, hub.py is transport only, and `hf-hub:` specs parse one way."""

import ast
from pathlib import Path

import pytest

from reclip_eval.hub import HUB_PREFIX, parse_hub_spec

PACKAGE = Path(__file__).resolve().parents[1] / "reclip_eval"
# Libraries that read or write checkpoints or talk to the Hub.
IO_LIBRARIES = {"huggingface_hub", "safetensors"}


def imported_modules(path: Path) -> set[str]:
    """Dotted names of every module `path` imports, at any depth (lazy imports inside functions count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


@pytest.mark.parametrize("path", sorted((PACKAGE / "models").rglob("*.py")), ids=lambda p: p.name)
def test_models_do_no_io(path):
    """The model classes are plain torch: saving and loading are reclip_eval.checkpoint's."""
    imported = imported_modules(path)
    bad = {m for m in imported if m.split(".")[0] in IO_LIBRARIES}
    bad |= {m for m in imported if m in ("reclip_eval.checkpoint", "reclip_eval.hub", "reclip_eval.publish")}
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_hub_transport_knows_no_checkpoint_format_or_cards():
    """hub.py sits below checkpoint.py (which downloads through it) and publish.py (which renders cards)."""
    ours = {m for m in imported_modules(PACKAGE / "hub.py") if m.startswith("reclip_eval")}
    assert ours == {"reclip_eval.errors"}


@pytest.mark.parametrize(("spec", "expected"), [
    (f"{HUB_PREFIX}org/name", ("org/name", None)),
    (f"{HUB_PREFIX}org/name@v1.0", ("org/name", "v1.0")),
    ("org/name@" + "a" * 40, ("org/name", "a" * 40)),
    (f"{HUB_PREFIX}org/name@", ("org/name", None)),  # an empty revision means the default branch
])
def test_parse_hub_spec(spec, expected):
    assert parse_hub_spec(spec) == expected
