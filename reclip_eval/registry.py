"""One lookup helper for everything chosen by name: task kinds, model kinds, architecture presets, and the named
YAML files (zoo entries, tasks, recipes). Duplicates raise; an unknown name lists near matches and how to list them
all, in one message form (`unknown_name`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

from reclip_eval.errors import UnknownNameError
from reclip_eval.names import near_matches
from reclip_eval.paths import data_folder

T = TypeVar("T")

# What to type to see the known names, per kind.
_LIST_COMMAND = {"model": "reclip-eval models", "model kind": "reclip-eval models", "task": "reclip-eval tasks",
                 "task kind": "reclip-eval tasks", "data layout": "reclip-eval tasks", "recipe": "reclip-eval recipes"}


def unknown_name(kind: str, name: str, known: list[str]) -> UnknownNameError:
    """The error for an unknown `kind` called `name`: the near matches, every known name, and the listing command."""
    near = near_matches(name, known)
    hint = f" Did you mean: {', '.join(near)}?" if near else ""
    listing = f" Known: {', '.join(sorted(known))}." if known else ""
    see = f" (`{_LIST_COMMAND[kind]}` lists them.)" if kind in _LIST_COMMAND else ""
    return UnknownNameError(f"unknown {kind} {name!r}.{hint}{listing}{see}")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name not in self._items:
            raise unknown_name(self.kind, name, list(self._items))
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def values(self) -> list[T]:
        """The registered objects, in the order of `names()`."""
        return [self._items[name] for name in self.names()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def named_yaml_files(folder: str) -> dict[str, Path]:
    """name -> path of every `*.yaml` directly in the data folder `folder` (zoo, tasks, training)."""
    root = data_folder(folder)
    return {p.stem: p for p in sorted(root.glob("*.yaml"))} if root.is_dir() else {}


def find_named_yaml(folder: str, kind: str, name_or_path: str) -> Path:
    """A name in the data folder, or a path to a YAML file of the user's."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    files = named_yaml_files(folder)
    if name_or_path in files:
        return files[name_or_path]
    raise unknown_name(kind, name_or_path, list(files))
