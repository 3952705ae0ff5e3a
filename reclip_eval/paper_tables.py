"""The paper's reported numbers, transcribed once as data (leaderboards/paper/reclip_tables.yaml), and their one
reader. The siblings' reported numbers (CLIPA, FLIP, SLIP) are transcribed the same way, one file per paper
(leaderboards/paper/NAME_tables.yaml), each with its source; zoo entries name the paper of a row they refer to.

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
RECLIP = "reclip"  # the paper this project implements; its tables are the leaderboards'


def paper_file(paper: str = RECLIP) -> Path:
    """leaderboards/ -relative path of the tables file of `paper` (reclip, clipa, flip, slip)."""
    return Path("paper") / f"{paper}_tables.yaml"


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
    url: str = ""  # where to read the source


def load_paper_tables(path: Path | None = None, paper: str = RECLIP) -> PaperTables:
    path = path or data_folder("leaderboards") / paper_file(paper)
    return from_dict(PaperTables, load_yaml(path), source=str(path))
