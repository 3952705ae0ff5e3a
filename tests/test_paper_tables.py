"""leaderboards/paper/reclip_tables.yaml: the paper's Tables 1-10 as data.

Three kinds of checks: the file's structure; every number against the paper's text (each row's values, in column
order, against the tab-separated line of that row; skipped only where the paper's text is not beside the repo);
and that the named models refer to their rows (zoo entries hold references, never copies of the numbers:
tests/test_zoo_entries.py tests the mechanism).
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TABLES_FILE = REPO / "leaderboards" / "paper" / "reclip_tables.yaml"
PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper" / "reclip-paper.txt"

MODELS = {"clip-repro-224", "reclip-112", "reclip-80", "reclip-64", "reclip-64-f20k"}
TABLE_NUMBERS = list(range(1, 11))
# The first cell of a paper line that holds a value: Tables 1-3 and 5 start with the method's name, Table 4 with the
# name and two text columns (pretrained model, detector backbone); in Tables 6-10 the first cell is a value.
FIRST_VALUE_CELL = {1: 1, 2: 1, 3: 1, 4: 3, 5: 1, 6: 0, 7: 0, 8: 0, 9: 0, 10: 0}
ABSENT = object()  # the paper's "-"

needs_paper = pytest.mark.skipif(
    not PAPER.is_file(), reason=f"the paper's text ({PAPER}) is not beside the repository; paper-text checks skipped")


def _load() -> dict:
    return yaml.safe_load(TABLES_FILE.read_text(encoding="utf-8"))


def _table(number: int) -> dict:
    (table,) = [t for t in _load()["tables"] if t["table"] == f"Table {number}"]
    return table


def _row(table: str, label: str) -> dict:
    (t,) = [t for t in _load()["tables"] if t["table"] == table]
    (row,) = [r for r in t["rows"] if r["row"] == label]
    return row


# --- structure -------------------------------------------------------------------------------------------------


def test_top_level():
    data = _load()
    assert set(data) == {"source", "tables"}
    assert "RECLIP" in data["source"] and "TMLR" in data["source"]
    assert [t["table"] for t in data["tables"]] == [f"Table {n}" for n in TABLE_NUMBERS]


@pytest.mark.parametrize("number", TABLE_NUMBERS)
def test_table_structure(number):
    table = _table(number)
    assert set(table) <= {"table", "title", "note", "columns", "rows"}
    assert isinstance(table["title"], str) and table["title"].strip()
    assert isinstance(table.get("note", ""), str)
    assert table["columns"] and table["rows"]
    keys = [c["key"] for c in table["columns"]]
    assert all(set(c) == {"key", "title"} and c["key"] and c["title"] for c in table["columns"])
    assert len(keys) == len(set(keys)), "duplicate column key"
    labels = [r["row"] for r in table["rows"]]
    assert len(labels) == len(set(labels)), f"row labels repeat: {labels}"
    for row in table["rows"]:
        assert set(row) <= {"row", "model", "values", "note"} and {"row", "model", "values"} <= set(row)
        assert isinstance(row["row"], str) and row["row"].strip()
        assert row["model"] is None or row["model"] in MODELS, row
        assert row["values"], row["row"]
        unknown = set(row["values"]) - set(keys)
        assert not unknown, f"{row['row']}: keys {unknown} are not columns of {table['table']}"
        for key, value in row["values"].items():
            if key == "multigrid":
                assert isinstance(value, bool)
            elif key == "stages":
                assert isinstance(value, str)
            else:
                assert isinstance(value, int | float) and not isinstance(value, bool), (row["row"], key, value)
            if key == "compute/tpu_v3_core_hours" or key == "steps":
                assert isinstance(value, int), f"{row['row']}: {key} is written out as an integer"


def test_metric_keys_and_prefixes():
    """Table 5 keeps before/after apart by prefix; Table 10 by mask/reclip; everywhere else the project's keys."""
    t5 = [c["key"] for c in _table(5)["columns"]]
    assert t5[0] == "steps"
    assert [k.removeprefix("before_finetune/") for k in t5[1:6]] == \
        [k.removeprefix("after_finetune/") for k in t5[6:]] == \
        ["imagenet/top1", "flickr30k/i2t_R@1", "flickr30k/t2i_R@1", "mscoco/i2t_R@1", "mscoco/t2i_R@1"]
    assert [c["key"] for c in _table(10)["columns"]] == ["image_size", "mask/imagenet/top1", "reclip/imagenet/top1"]
    assert [c["key"] for c in _table(4)["columns"]] == ["lvis/APr", "lvis/AP"]
    assert [c["key"] for c in _table(2)["columns"]] == ["compute/gflops_per_sample"]


def test_models_named_where_the_paper_names_them():
    """RECLIP-X / "CLIP, our repro." rows of Tables 1, 2, 3, 5 carry their model; every other row is null."""
    for table in _load()["tables"]:
        number = int(table["table"].split()[-1])
        for row in table["rows"]:
            label = row["row"]
            expected = None
            if number in (1, 2, 3, 5):
                if label.startswith("CLIP, our repro."):
                    expected = "clip-repro-224"
                else:
                    m = re.match(r"RECLIP-(\d+)(-F20K)?\b", label)
                    if m:
                        expected = f"reclip-{m[1]}" + ("-f20k" if m[2] else "")
            assert row["model"] == expected, (table["table"], label)
    assert "reclip-80" in _row("Table 4", "RECLIP-RO-ViT (Ours)")["note"]


def test_table1_schedules():
    steps = {r["row"]: r["values"].get("steps") for r in _table(1)["rows"]}
    for label, value in steps.items():
        m = re.search(r"\((\d+)k steps\)$", label)
        assert (value is None) if m is None else value == int(m[1]) * 1000, label
    assert steps["RECLIP-64-F20K (270k steps)"] == 270000 and steps["RECLIP-64-F20K (570k steps)"] == 570000


def test_loader_reads_the_file():
    from reclip_eval.paper_tables import load_paper_tables

    tables = load_paper_tables(TABLES_FILE)
    assert [t.number for t in tables.tables] == TABLE_NUMBERS


# --- against the paper's text ----------------------------------------------------------------------------------


def _paper_block(lines: list[str], number: int) -> list[str]:
    """The tab-separated lines of Table `number`: the first run of them after its caption."""
    (start,) = [i for i, line in enumerate(lines) if line.startswith(f"Table {number}:")]
    i = start + 1
    while "\t" not in lines[i]:
        i += 1
    block = []
    while i < len(lines) and "\t" in lines[i]:
        block.append(lines[i])
        i += 1
    return block


def _parse(cell: str, key: str):
    """A printed cell as the file stores it. "120.0K†" -> 120000, "74.2 (+5.2)" -> 74.2, "-" -> ABSENT."""
    cell = cell.replace("†", "").strip()
    cell = re.sub(r"\s*\(\+\s*[\d.]+\)$", "", cell)  # Table 5 / 10 gains, derived and not stored
    if cell == "-":
        return ABSENT
    if key == "multigrid":
        return {"✓": True, "✗": False}[cell]
    if key == "stages":
        return re.sub(r"\s*\\rightarrow\s*", " -> ", cell)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKMB]?)", cell)
    assert m, f"cannot read {cell!r} as {key}"
    # "16k" is a batch of 16384 (Section 3.2); every other k/K/M/B is decimal.
    unit = {"": 1, "k": 1000, "K": 1000, "M": 10**6, "B": 10**9}[m[2]]
    if key == "batch_size" and m[2] == "k":
        unit = 1024
    return Decimal(m[1]) * unit


def _is_number(cell: str) -> bool:
    cell = re.sub(r"\s*\(\+\s*[\d.]+\)$", "", cell.replace("†", "").strip())
    return re.fullmatch(r"\d+(?:\.\d+)?[kKMB]?", cell) is not None


def _same(printed, stored) -> bool:
    if printed is ABSENT or isinstance(printed, bool | str):
        return printed is stored or (not isinstance(printed, Decimal) and printed == stored)
    return not isinstance(stored, bool) and isinstance(stored, int | float) and Decimal(str(stored)) == printed


def _label(cell: str) -> str:
    return re.sub(r"\s*\\rightarrow\s*", " -> ", cell.strip())


@needs_paper
@pytest.mark.parametrize("number", TABLE_NUMBERS)
def test_every_number_matches_the_paper(number):
    lines = PAPER.read_text(encoding="utf-8").splitlines()
    table = _table(number)
    keys = [c["key"] for c in table["columns"]]
    data_lines = [line.split("\t") for line in _paper_block(lines, number)]
    # Header lines start with an empty cell or hold no number; data lines name their row first.
    data_lines = [c for c in data_lines if c[0].strip() and any(_is_number(x) for x in c[1:])]
    assert len(data_lines) == len(table["rows"]), [c[0] for c in data_lines]
    checked = 0
    for cells, row in zip(data_lines, table["rows"], strict=True):
        assert _label(cells[0]) in row["row"], f"{table['table']}: paper row {cells[0]!r} vs {row['row']!r}"
        printed = [c for c in cells[FIRST_VALUE_CELL[number]:]]
        while printed and not printed[-1].strip():  # Table 5's lines end with a tab
            printed.pop()
        assert len(printed) == len(keys), (row["row"], printed)
        for key, cell in zip(keys, printed, strict=True):
            expected = _parse(cell, key)
            stored = row["values"].get(key, ABSENT)
            assert _same(expected, stored), f"{table['table']} / {row['row']} / {key}: paper {cell!r}, file {stored!r}"
            checked += expected is not ABSENT
    assert checked == sum(len(r["values"]) for r in table["rows"])


# Hand spot-checks, at least two per table: (table, row, key, value, a fragment of the paper's line).
SPOT = [
    ("Table 1", "CLIP* (Radford et al., 2021)", "compute/tpu_v3_core_hours", 120000,
     "CLIP* (Radford et al., 2021)\t-\t120.0K\t88.0"),
    ("Table 1", "RECLIP-64 (600k steps)", "compute/tpu_v3_core_hours", 9200, "RECLIP-64\t600k\t9.2K\t91.0"),
    ("Table 1", "RECLIP-64-F20K (270k steps)", "imagenet-sketch/top1", 60.6, "\t85.3\t65.3\t60.6"),
    ("Table 1", "CLIP, our repro. (300k steps)", "compute/tpu_v3_core_hours", 26400, "CLIP, our repro.\t300k\t26.4K"),
    ("Table 2", "CLIP, our repro.", "compute/gflops_per_sample", 71.4, "CLIP, our repro.\t71.4"),
    ("Table 2", "RECLIP-64", "compute/gflops_per_sample", 7.3, "RECLIP-64\t7.3"),
    ("Table 3", "PaLI (Chen et al., 2022b)", "compute/tpu_v3_core_hours", 598700, "\t3.9B\t598.7K\t85.4\t-"),
    ("Table 3", "FLIP (Li et al., 2022b)", "mscoco/t2i_R@1", 47.3, "\t63.8\t-\t47.3\t-"),
    ("Table 3", "RECLIP-64-F20K (ours)", "flickr30k/i2t_R@1", 92.5, "RECLIP-64-F20K (ours)\t303M\t16.4K\t75.3\t92.5"),
    ("Table 3", "CoCa (Yu et al., 2022)", "mscoco/t2i_R@5", 74.2, "\t51.2\t74.2"),
    ("Table 4", "RO-ViT (Kim et al., 2023)", "lvis/APr", 32.1, "ViT-L/16\t32.1\t34.0"),
    ("Table 4", "RECLIP-RO-ViT (Ours)", "lvis/AP", 34.7, "ViT-L/16\t32.0\t34.7"),
    ("Table 5", "RECLIP-64 (300k)", "before_finetune/flickr30k/t2i_R@1", 63.6, "RECLIP-64\t300k\t62.8\t79.6\t63.6"),
    ("Table 5", "RECLIP-80 (600k)", "after_finetune/mscoco/i2t_R@1", 64.6, "\t64.6 (+ 8.8)\t"),
    ("Table 6", "64", "compute/tpu_v3_core_hours", 15500, "64\t15.5K\t91.2"),
    ("Table 6", "16", "imagenet/top1", 75.8, "\t47.2\t75.8"),
    ("Table 7", "4k", "imagenet/top1", 64.4, "4k\t4.2K\t81.9\t68.8\t51.2\t38.6\t64.4"),
    ("Table 7", "16k", "batch_size", 16384, "16k\t13.1K"),
    ("Table 8", "✓ (multi-grid)", "compute/tpu_v3_core_hours", 18400, "✓\t18.4K\t89.2"),
    ("Table 8", "✗ (no multi-grid)", "multigrid", False, "✗\t13.1K"),
    ("Table 9", "112 -> 224 -> 448", "compute/tpu_v3_core_hours", 31100, "448\t31.1K\t91.0"),
    ("Table 9", "112 -> 448", "flickr30k/t2i_R@1", 78.0, "112 \\rightarrow 448\t30.8K\t90.7\t78.0"),
    ("Table 10", "X = 80", "mask/imagenet/top1", 71.3, "80\t71.3\t75.8 (+3.5)"),
    ("Table 10", "X = 64", "reclip/imagenet/top1", 74.9, "64\t69.5\t74.9 (+5.4)"),
]


def test_spot_checks_cover_every_table():
    for number in TABLE_NUMBERS:
        assert sum(s[0] == f"Table {number}" for s in SPOT) >= 2, number


@pytest.mark.parametrize(("table", "row", "key", "value", "fragment"), SPOT)
def test_spot_values(table, row, key, value, fragment):
    stored = _row(table, row)["values"][key]
    assert stored == value and type(stored) is type(value)


@needs_paper
@pytest.mark.parametrize(("table", "row", "key", "value", "fragment"), SPOT)
def test_spot_fragments_in_paper(table, row, key, value, fragment):
    assert any(fragment in line for line in PAPER.read_text(encoding="utf-8").splitlines()), fragment


# --- the named models' references ----------------------------------------------------------------------------


def test_the_named_models_refer_to_rows_of_the_file():
    from reclip_eval.zoo.entries import list_entries

    referring = {e.name: e for e in list_entries() if any(r.paper == "reclip" for r in e.paper_rows)}
    assert set(referring) == MODELS
    for name, entry in referring.items():  # read here without the entries' reader: rows the file gives that model
        assert all(_row(r.table, r.row)["model"] == name for r in entry.paper_rows), name


# --- the siblings' tables (CLIPA, FLIP, SLIP) -------------------------------------------------------------------

SIBLINGS = {"clipa": {"clipa-l16-i17-t16", "clipa-v2-h14"}, "flip": {"flip-l16"}, "slip": {"slip-b16"}}
CLIPA_V2_ABSTRACT = Path(__file__).resolve().parents[2] / "shared" / "paper" / "clipa-v2-abstract.txt"


@pytest.mark.parametrize("paper", sorted(SIBLINGS))
def test_sibling_tables_give_rows_to_their_named_models(paper):
    from reclip_eval.paper_tables import load_paper_tables
    from reclip_eval.zoo.entries import load_entry

    tables = load_paper_tables(REPO / "leaderboards" / "paper" / f"{paper}_tables.yaml")
    assert tables.source and tables.url.startswith("https://")
    owners = {row.model for table in tables.tables for row in table.rows}
    assert owners == SIBLINGS[paper]
    for name in owners:  # every row of the file is referred to by its model's entry, and read through it
        entry = load_entry(name)
        rows = {(t.table, r.row) for t in tables.tables for r in t.rows if r.model == name}
        assert {(r.table, r.row) for r in entry.paper_rows if r.paper == paper} == rows
        assert len(entry.paper_numbers()) == len(entry.paper_rows)


@pytest.mark.skipif(not CLIPA_V2_ABSTRACT.is_file(), reason="the CLIPA-v2 abstract is not beside the repository")
def test_clipa_v2_abstract_numbers_are_the_abstracts():
    from reclip_eval.paper_tables import load_paper_tables

    text = CLIPA_V2_ABSTRACT.read_text(encoding="utf-8")
    (table,) = [t for t in load_paper_tables(paper="clipa").tables if t.table == "CLIPA-v2 abstract"]
    assert f"{table.rows[0].values['imagenet/top1']}%" in text and "81.8%" in text and "$10,000" in text
