"""The model kinds `--model` can load, as one registry: each kind says how to recognise a folder of its own, how to
load one, which files a Hub repo of it needs, and its prefix form if it has one (`openclip:ARCH`, `hf:PATH`).

A kind registers itself from its own module, beside its adapter:

    @register_model_kind("reclip", priority=20, recognise=..., layout="...", hub_files=HUB_FILES)
    def load_reclip_folder(folder: Path, request: LoadRequest) -> ModelAdapter: ...

The resolver (zoo/resolve.py) walks this registry instead of dispatching on kind names: the zoo's own kind modules
are imported by the resolver, those of the packages above the zoo (detectors) by reclip_eval/kinds.py, the plugin
list the CLI loads models through.

A kind's loader is registered (and returned by the decorator) behind the kind's folder check (zoo/folder_checks.py:
complete and consistent files, before any model is built), so every way into it, a recognised folder, a Hub
download or a prefix form calling it, checks the folder first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from reclip_eval.checkpoint import CONFIG_NAME
from reclip_eval.errors import CheckpointError, read_json
from reclip_eval.hub import CheckpointSource
from reclip_eval.registry import Registry
from reclip_eval.zoo.adapter import ModelAdapter
from reclip_eval.zoo.folder_checks import check_model_folder


@dataclass(frozen=True)
class LoadRequest:
    """What the resolver hands a kind besides the folder or prefix argument."""

    model_id: str  # as the results record it: the spec the user typed (a folder's path normalised)
    image_size: int | None = None  # build the model at this input size (None: its own)
    source: CheckpointSource | None = None  # where a folder came from: a Hub repo pinned to a commit, or None (local)
    checkpoint: str | None = None  # --checkpoint, for prefix forms whose argument names no weights
    random_init: bool = False  # --random-init: no weights, on purpose (prefix forms that allow it only)
    pretrained: str | None = None  # --pretrained TAG: a library's own pretrained tag (prefix forms that take one)
    # --model-config: the model's own architecture config, a path or a mapping (prefix forms that take one)
    model_config: str | Path | dict[str, Any] | None = None
    tokenizer: str | None = None  # --tokenizer SPEC (reclip_eval.models.tokenizers; prefix forms that take one)

    def hub_fields(self) -> dict[str, Any]:
        """The Hub repo, revision and commit the folder was downloaded from, for the results (empty when local)."""
        source = self.source
        if source is None or not source.repo_id:
            return {}
        return {"hub_repo": source.repo_id, "hub_revision": source.revision, "hub_commit": source.commit}


class ModelFolder:
    """A folder being recognised: its config.json is read once, and only when a kind asks for it (an open_clip
    folder is recognised by its own config file, whatever a config.json beside it holds)."""

    def __init__(self, path: Path):
        self.path = path

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    @cached_property
    def config(self) -> dict[str, Any] | None:
        """The parsed config.json, None when there is none."""
        path = self.path / CONFIG_NAME
        if not path.is_file():
            return None
        config = read_json(path, CheckpointError)
        if not isinstance(config, dict):
            raise CheckpointError(f"{path}: expected a JSON object (the model's configuration), found "
                                  f"{type(config).__name__}")
        return config

    def config_says(self, key: str, value: str) -> bool:
        """Whether config.json exists and sets `key` to `value` (how the config.json kinds tell themselves apart)."""
        config = self.config
        return config is not None and config.get(key) == value


LoadFolder = Callable[[Path, LoadRequest], ModelAdapter]


@dataclass(frozen=True)
class PrefixForm:
    """`PREFIXARGUMENT` as a `--model` spec, e.g. `openclip:ARCH`: loaded by `load(argument, request)`."""

    prefix: str
    argument: str  # what the argument is, as usage text shows it ("ARCH", "PATH")
    load: Callable[[str, LoadRequest], ModelAdapter]
    random_init: bool = False  # whether --random-init applies (an architecture without weights, on purpose)
    pretrained: bool = False  # whether --pretrained TAG applies (the library's own table of pretrained weights)
    model_config: bool = False  # whether --model-config FILE applies (the architecture config of a foreign tree)
    tokenizer: bool = False  # whether --tokenizer SPEC applies (a foreign tree's own vocabulary)

    @property
    def usage(self) -> str:
        return f"{self.prefix}{self.argument}"


@dataclass(frozen=True)
class ModelKind:
    name: str
    priority: int  # folders are offered to the kinds in ascending priority; the first that recognises one loads it
    layout: str  # what a folder of the kind holds, for `reclip-eval models`
    recognise: Callable[[ModelFolder], bool]
    load: LoadFolder
    hub_files: tuple[str, ...] = ()  # file patterns a Hub repo of the kind needs (never pickles)
    prefix_form: PrefixForm | None = None


MODEL_KINDS: Registry[ModelKind] = Registry("model kind")


def register_model_kind(name: str, *, priority: int, layout: str, recognise: Callable[[ModelFolder], bool],
                        hub_files: tuple[str, ...] | list[str] = (),
                        prefix_form: PrefixForm | None = None) -> Callable[[LoadFolder], LoadFolder]:
    """Register the decorated folder loader as the model kind `name`, behind the kind's folder check (the checked
    loader is what the decorator returns). Names and priorities are unique, so the order folders are recognised in
    is defined whatever order the kind modules are imported in."""

    def decorator(load: LoadFolder) -> LoadFolder:
        taken = {kind.priority: kind.name for kind in MODEL_KINDS.values()}
        if priority in taken:
            raise ValueError(f"model kind {name!r}: priority {priority} is taken by {taken[priority]!r}")

        @functools.wraps(load)
        def checked_load(folder: Path, request: LoadRequest) -> ModelAdapter:
            check_model_folder(name, folder)
            return load(folder, request)

        MODEL_KINDS.register(name)(ModelKind(name, priority, layout, recognise, checked_load, tuple(hub_files),
                                             prefix_form))
        return checked_load

    return decorator


def model_kinds() -> list[ModelKind]:
    """Every registered kind, in the order folders are offered to them."""
    return sorted(MODEL_KINDS.values(), key=lambda kind: kind.priority)


def recognising_kind(folder: ModelFolder) -> ModelKind | None:
    """The first kind (by priority) that recognises `folder`, None when none does."""
    return next((kind for kind in model_kinds() if kind.recognise(folder)), None)


def prefix_forms() -> list[PrefixForm]:
    """The registered prefix forms, in kind priority order."""
    return [kind.prefix_form for kind in model_kinds() if kind.prefix_form is not None]


def prefix_form_of(spec: str) -> PrefixForm | None:
    """The prefix form `spec` is written in, or None (a name or a path)."""
    return next((form for form in prefix_forms() if spec.startswith(form.prefix)), None)


def hub_files() -> list[str]:
    """The files to download from a Hub repo of any registered kind (each pattern once, in kind priority order)."""
    return list(dict.fromkeys(pattern for kind in model_kinds() for pattern in kind.hub_files))
