"""Leaderboards are a pure function of results JSON and the paper's numbers, and the committed ones are current."""

import json
import shutil

from reclip_eval.cli.main import main
from reclip_eval.leaderboard.build import build_leaderboards, stale_files
from reclip_eval.paths import data_folder

from .conftest import REPO


def test_committed_leaderboards_are_up_to_date():
    """CI's drift check: regenerating from the committed results gives the committed files, byte for byte."""
    files = build_leaderboards(REPO / "leaderboards" / "results")
    assert stale_files(files, REPO / "leaderboards") == []


def test_build_is_deterministic_and_covers_every_paper_table():
    results = data_folder("leaderboards") / "results"
    first, second = build_leaderboards(results), build_leaderboards(results)
    assert first == second
    assert {f"table{n}.md" for n in range(1, 11)} | {"models.md", "README.md"} == set(first)
    assert "| computed | reclip-64 (64 px, text 16)" in first["table2.md"]


def test_real_results_fill_columns_without_the_twin_mark(tmp_path):
    source = json.loads((REPO / "leaderboards" / "results" / "reclip-demo__shapes-zeroshot.json").read_text())
    real = {**source, "task": {**source["task"], "name": "imagenet"},
            "model": {**source["model"], "id": "someone/clip"}, "metrics": {**source["metrics"], "top1": 0.5}}
    (tmp_path / "someone_clip__imagenet.json").write_text(json.dumps(real))
    shutil.copy(REPO / "leaderboards" / "results" / "reclip-demo__shapes-zeroshot.json", tmp_path)
    table1 = build_leaderboards(tmp_path)["table1.md"]
    real_row = next(line for line in table1.splitlines() if "someone/clip" in line)
    twin_row = next(line for line in table1.splitlines() if "reclip-demo" in line and "measured" in line)
    assert "| 50.00 " in real_row and "†" not in real_row
    assert "25.42†" in twin_row


def test_check_mode_fails_on_a_difference(tmp_path, capsys):
    out = tmp_path / "boards"
    assert main(["leaderboard", "--results", str(REPO / "leaderboards" / "results"), "--out", str(out)]) == 0
    assert main(["leaderboard", "--results", str(REPO / "leaderboards" / "results"), "--out", str(out),
                 "--check"]) == 0
    (out / "table1.md").write_text("edited by hand\n")
    assert main(["leaderboard", "--results", str(REPO / "leaderboards" / "results"), "--out", str(out),
                 "--check"]) == 1
    assert "table1.md" in capsys.readouterr().err
