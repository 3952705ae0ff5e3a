"""Named models: one zoo entry `zoo/NAME.yaml` each (description, recipe or architecture, weights if published,
references to the paper's rows).

"Card" is the Hugging Face README rendered for a checkpoint (reclip_eval/cards/); an entry is what `--model NAME`
names. Each fact an entry needs has one source:

- Architecture: an entry that names a recipe has what that recipe trains (the recipe's model at its last stage's
  image size: the trainer resizes the model at every stage); an entry without one (a model trained elsewhere)
  states `architecture:`. Stating both, or neither, is an error naming the file.
- The paper's numbers: `paper_rows` lists references (`{table: "Table 1", row: "RECLIP-64 (300k steps)"}`) into
  leaderboards/paper/reclip_tables.yaml, read through its one reader; the numbers are never copied here. A
  reference to a missing table or row, or to a row the tables file gives to another model, is an error naming the
  entry file and the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from reclip_eval.config import Rule, enforce_rules, from_dict, load_yaml
from reclip_eval.errors import ConfigError
from reclip_eval.hub import HUB_PREFIX
from reclip_eval.models.config import CLIPConfig
from reclip_eval.models.presets import ArchitectureSpec, with_image_size
from reclip_eval.names import near_matches
from reclip_eval.paper_tables import RECLIP, PaperTables, load_paper_tables, paper_file
from reclip_eval.registry import find_named_yaml, named_yaml_files

FOLDER = "zoo"


def _one_architecture_source(architecture: ArchitectureSpec | None, recipe: str | None) -> str | None:
    if architecture is not None and recipe is not None:
        return (f"stated, but recipe {recipe!r} already defines it (its model at its last stage's image size); "
                "remove architecture")
    if architecture is None and recipe is None:
        return "required when no recipe is named (a model trained elsewhere states its architecture)"
    return None


@dataclass(frozen=True)
class PaperRowRef:
    """A row of a paper's tables (leaderboards/paper/PAPER_tables.yaml), by table id and row label."""

    table: str
    row: str
    paper: str = RECLIP  # whose tables: reclip (the default), or a sibling's (clipa, flip, slip)


@dataclass(frozen=True)
class PaperNumbers:
    """What one referenced row reports, labelled with where it comes from."""

    table: str
    row: str
    values: dict[str, Any]
    source: str  # the paper (the tables file's `source`)
    url: str = ""  # where to read it (the tables file's `url`)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    recipe: str | None = None  # a recipe name under training/; the entry's architecture is what it trains
    architecture: ArchitectureSpec | None = None  # only for an entry without a recipe
    # Local checkpoint dir relative to zoo/, or "hf-hub:org/name[@revision]"; null when never published.
    checkpoint: str | None = None
    license: str = "apache-2.0"
    training_data: str = ""
    intended_use: str = ""
    limitations: str = ""
    paper_rows: list[PaperRowRef] = field(default_factory=list)
    path: str = ""  # filled in when loaded

    config_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(("architecture", "recipe"), _one_architecture_source),
        # An empty name would be the entry's own folder, and the error would then name a folder, not this key.
        Rule(("checkpoint",), lambda c: None if c is None or c.strip() else
             f"{c!r} is empty; expected a checkpoint folder relative to the entry, {HUB_PREFIX}org/name, or null"),
    )

    def __post_init__(self) -> None:
        enforce_rules(self)

    def config(self) -> CLIPConfig:
        if self.recipe is None:
            return self.architecture.build(source=self.path)  # config_rules: stated when no recipe is named
        return recipe_architecture(self.recipe)

    def checkpoint_path(self) -> Path | None:
        if self.checkpoint is None or self.checkpoint.startswith(HUB_PREFIX):
            return None
        return (Path(self.path).parent / self.checkpoint).resolve()

    def paper_numbers(self, tables: PaperTables | None = None) -> list[PaperNumbers]:
        """The referenced rows' numbers, from the papers' tables files (`tables`: RECLIP's, already read)."""
        numbers, problems = _resolve(self, tables)
        if problems:
            raise ConfigError(self.path, problems)
        return numbers


def recipe_architecture(recipe: str) -> CLIPConfig:
    """The architecture of the checkpoint recipe `recipe` trains: its model at its last stage's image size."""
    from reclip_eval.train.recipe import load_recipe

    loaded = load_recipe(recipe)
    if loaded.model is None:  # the architecture is the init checkpoint's (train/init_from.py)
        from reclip_eval.zoo.init_weights import load_init

        return with_image_size(load_init(loaded.init).config, loaded.stages[-1].image_size)
    return with_image_size(loaded.model.build(source=f"recipe {loaded.name}"), loaded.stages[-1].image_size)


def _resolve(entry: ZooEntry, reclip: PaperTables | None = None) -> tuple[list[PaperNumbers], list[str]]:
    """The numbers of `entry`'s paper rows and the problems of its references (`reclip`: RECLIP's tables, read)."""
    loaded = {RECLIP: reclip} if reclip is not None else {}
    numbers, problems = [], []
    for index, ref in enumerate(entry.paper_rows):
        where = f"paper_rows[{index}] ({ref.table} / {ref.row!r})"
        path = f"leaderboards/{paper_file(ref.paper).as_posix()}"
        if ref.paper not in loaded:
            try:
                loaded[ref.paper] = load_paper_tables(paper=ref.paper)
            except ConfigError as e:
                problems.append(f"{where}: paper {ref.paper!r}: {'; '.join(e.problems)} ({path})")
                continue
        tables = loaded[ref.paper]
        by_id = {t.table: t for t in tables.tables}
        table = by_id.get(ref.table)
        if table is None:
            problems.append(f"{where}: no table {ref.table!r} in {path}{_did_you_mean(ref.table, list(by_id))}")
            continue
        row = next((r for r in table.rows if r.row == ref.row), None)
        if row is None:
            problems.append(f"{where}: {ref.table} has no row {ref.row!r}"
                            f"{_did_you_mean(ref.row, [r.row for r in table.rows])}")
        elif row.model != entry.name:
            owner = f"model {row.model!r}" if row.model else "no named model"
            problems.append(f"{where}: the tables file gives this row to {owner}, not {entry.name!r}")
        else:
            numbers.append(PaperNumbers(ref.table, row.row, row.values, tables.source, tables.url))
    return numbers, problems


def _did_you_mean(name: str, known: list[str]) -> str:
    near = near_matches(name, known)
    return f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""


def load_entry(name_or_path: str) -> ZooEntry:
    """The entry `zoo/NAME.yaml` (or a YAML file of the user's), its paper references checked."""
    path = find_named_yaml(FOLDER, "model", name_or_path)
    entry = from_dict(ZooEntry, {**load_yaml(path), "path": str(path)}, source=str(path))
    problems = [f"name: {entry.name!r} must equal the file name {path.stem!r}"] if entry.name != path.stem else []
    if entry.paper_rows:
        problems += _resolve(entry)[1]
    if problems:
        raise ConfigError(str(path), problems)
    return entry


def list_entries() -> list[ZooEntry]:
    return [load_entry(str(p)) for p in named_yaml_files(FOLDER).values()]
