"""The paper's reported numbers, transcribed once as data (leaderboards/paper/reclip_tables.yaml), and their one
reader.

Below everything that shows them: the leaderboard renders the tables, the zoo entries refer to their rows by table
and row label (reclip_eval/zoo/entries.py), model cards and `reclip-eval flops` show the rows an entry refers to.
Only config parsing and the data folders are imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reclip_eval.config import from_dict, load_yaml
from reclip_eval.paths import data_folder

PAPER_FILE = Path("paper") / "reclip_tables.yaml"


@dataclass(frozen=True)
class Column:
    key: str
    title: str


@dataclass(frozen=True)
class PaperRow:
    row: str
    values: dict[str, Any]
    model: str | None = None
    note: str = ""


@dataclass(frozen=True)
class PaperTable:
    table: str
    title: str
    columns: list[Column]
    rows: list[PaperRow]
    note: str = ""

    @property
    def number(self) -> int:
        return int(self.table.split()[-1])


@dataclass(frozen=True)
class PaperTables:
    source: str
    tables: list[PaperTable]


def load_paper_tables(path: Path | None = None) -> PaperTables:
    path = path or data_folder("leaderboards") / PAPER_FILE
    return from_dict(PaperTables, load_yaml(path), source=str(path))
