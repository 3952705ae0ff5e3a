"""Leaderboards are a pure function of results JSON and the paper's numbers, and the committed ones are current."""

import json

import pytest

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
    assert first == second  # the PNG too: no timestamp in its metadata
    assert {f"table{n}.md" for n in range(1, 11)} | {"models.md", "README.md", "figure2.md", "figure2.png",
                                                   "siblings.md", "siblings.png", "backends.md",
                                                   "backends.png"} == set(first)
    # A comparison row whose named sources are the compared things (the two trainers) is one point per source.
    assert "| miniature | mini RECLIP-32 (torch) | 14.531 TMACs | 85.09 [80.25, 89.94] |" in first["backends.md"]
    assert first["figure2.png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert "| computed | reclip-64 (64 px, text 16)" in first["table2.md"]
    # Figure 2's paper points are Table 1's: retrieval is the mean of the four R@1 columns.
    assert "| paper | RECLIP-80 (600k steps) | 11,200 core-hours | 75.80 | 70.33 |" in first["figure2.md"]


def _result(task: str, model: str, image_size: int, metrics: dict, compute: dict | None = None) -> dict:
    source = json.loads((REPO / "leaderboards" / "results" / "reclip-demo__shapes-zeroshot.json").read_text())
    kind = "retrieval" if "retrieval" in task else source["task"]["kind"]
    return {**source, "task": {**source["task"], "name": task, "kind": kind},
            "model": {**source["model"], "id": model, "image_size": image_size, "compute": compute or {}},
            "metrics": metrics}


def _write(folder, result: dict) -> None:
    name = f"{result['model']['id'].replace('/', '_')}__{result['task']['name']}__{result['model']['image_size']}.json"
    (folder / name).write_text(json.dumps(result))


def test_real_results_join_paper_tables_and_twins_only_through_the_miniature_file(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    _write(results, _result("imagenet", "someone/clip", 224, {"top1": 0.5}))
    _write(results, _result("shapes-zeroshot", "runs/a", 64, {"top1": 0.25}))
    table1 = build_leaderboards(results, figure=False)["table1.md"]
    real_row = next(line for line in table1.splitlines() if "someone/clip" in line)
    assert "| 50.00 " in real_row and "†" not in real_row
    assert "runs/a" not in table1  # a synthetic-twin result alone says nothing about the paper's Table 1


def test_miniature_rows_average_seeds_mark_twins_and_say_what_is_missing(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    compute = {"train_gmacs": 2.0e6, "train_device_hours": 0.1}
    _write(results, _result("shapes-zeroshot", "runs/a", 64, {"top1": 0.20}, compute))
    _write(results, _result("shapes-zeroshot", "runs/a-s1", 64, {"top1": 0.30}, compute))
    _write(results, _result("shapes-retrieval", "runs/a", 64, {"i2t_R@1": 0.5, "t2i_R@1": 0.3}, compute))
    _write(results, _result("shapes-retrieval", "runs/a-s1", 64, {"i2t_R@1": 0.7, "t2i_R@1": 0.5}, compute))
    _write(results, _result("shapes-zeroshot", "runs/a/stages/lowres", 32, {"top1": 0.1}))
    (tmp_path / "miniature.yaml").write_text(
        "note: toy\nevaluated_with: x\ntables:\n"
        "  - table: 1\n    note: t1\n    rows:\n"
        "      - {label: mini A, trained_with: [train a], values: {steps: 10},"
        " source: {models: [runs/a, runs/a-s1], image_size: 64}}\n"
        "      - {label: mini B, trained_with: [train b], source: {models: [runs/b], image_size: 64}}\n"
        "  - table: 5\n    note: t5\n    rows:\n"
        "      - label: mini A\n        trained_with: [train a]\n        sources:\n"
        "          before_finetune: {models: [runs/a/stages/lowres], image_size: 32}\n"
        "          after_finetune: {models: [runs/a], image_size: 64}\n")
    files = build_leaderboards(results)
    row_a = next(line for line in files["table1.md"].splitlines() if "| mini A" in line)
    cells = [c.strip() for c in row_a.split("|")]
    # ImageNet column from shapes-zeroshot, two seeds: mean [95% CI], t(0.975, 1) * 7.07 / sqrt(2) = 63.53
    assert "25.00 [-38.53, 88.53]†" in cells
    assert "60.00 [-67.06, 187.06]†" in cells and "40.00 [-87.06, 167.06]†" in cells  # Flickr30K I2T / T2I
    assert "mean [lo, hi]" in files["table1.md"] and "n = seeds" in files["table1.md"]  # the legend says so
    assert cells[3] == "10" and cells[-3:-1] == ["2,000", "0.1"]  # steps; TMACs, device-hours
    assert "Not measured yet: runs/b @ 64 px." in files["table1.md"]
    row_5 = next(line for line in files["table5.md"].splitlines() if "| mini A" in line)
    assert "10.00†" in row_5 and "20.00†" in row_5  # before (stage checkpoint at 32 px), after (seed 0 at 64 px)
    assert "| miniature | mini A (" not in files["figure2.md"]
    # Retrieval per seed (40, 60), then its interval over seeds, as the figure's error bars.
    assert "| miniature | mini A | 2,000.000 TMACs | 25.00 [-38.53, 88.53] | 50.00 [-77.06, 177.06] |" in files[
        "figure2.md"]
    assert "mini B" not in files["figure2.md"]


def test_check_mode_fails_on_a_difference(tmp_path, capsys):
    out = tmp_path / "boards"
    assert main(["leaderboard", "--results", str(REPO / "leaderboards" / "results"), "--out", str(out)]) == 0
    assert main(["leaderboard", "--results", str(REPO / "leaderboards" / "results"), "--out", str(out),
                 "--check"]) == 0
    (out / "table1.md").write_text("edited by hand\n")
    assert main(["leaderboard", "--results", str(REPO / "leaderboards" / "results"), "--out", str(out),
                 "--check"]) == 1
    assert "table1.md" in capsys.readouterr().err


def test_two_files_for_one_cell_with_other_weights_are_refused(tmp_path):
    """`--checkpoint` results of a named model keep their own file, but the leaderboard groups by model id: it must
    not let whichever file sorts last silently fill the cell."""
    import pytest

    from reclip_eval.errors import ReclipError

    results = tmp_path / "results"
    results.mkdir()
    first = _result("shapes-zeroshot", "reclip-demo", 64, {"top1": 0.25})
    other = _result("shapes-zeroshot", "reclip-demo", 64, {"top1": 0.10})
    other["model"]["weights"] = {**other["model"]["weights"], "sha256": "0" * 64}
    (results / "reclip-demo__shapes-zeroshot.json").write_text(json.dumps(first))
    (results / "reclip-demo@000000000000__shapes-zeroshot.json").write_text(json.dumps(other))
    with pytest.raises(ReclipError, match=r"reclip-demo@000000000000__shapes-zeroshot.json and "
                                          r"reclip-demo__shapes-zeroshot.json both hold reclip-demo at 64 px"):
        build_leaderboards(results, figure=False)


def test_the_leaderboard_reads_files_and_imports_nothing_that_counts():
    """Leaderboards are a function of results files and the task declarations: no model, trainer or FLOP counter
    behind them (Table 2's computed rows come from the file `reclip-eval flops` writes). Of eval they read only the
    task specs (which task is whose synthetic twin) and the task kinds (each kind's headline cell); those bring the
    runner modules that register the kinds, so importing the leaderboard loads torch, but calls nothing of it."""
    import ast

    from .test_layout import _imports

    counting = {"models", "train", "compute", "zoo", "data", "detect", "checkpoint", "cards", "cli"}
    # ... and the results schema every reader checks a file against, how its text goes into markdown, and the
    # suites (task lists with their scores and averages: arithmetic on results files).
    declarations = {"reclip_eval.eval.tasks", "reclip_eval.eval.task_kinds", "reclip_eval.eval.results_schema",
                    "reclip_eval.eval.results_markdown", "reclip_eval.eval.suites"}
    package = REPO / "reclip_eval"
    for path in [*(package / "leaderboard").rglob("*.py"), package / "compute_results.py"]:
        assert not _imports(path) & counting, f"{path.relative_to(package)} imports {_imports(path) & counting}"
        tree = ast.parse(path.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        of_eval = {m for m in modules if m == "reclip_eval.eval" or m.startswith("reclip_eval.eval.")}
        assert of_eval <= declarations, f"{path.relative_to(package)} imports {sorted(of_eval - declarations)}"


def test_table2_computed_rows_are_the_compute_files(tmp_path):
    import shutil

    import pytest

    from reclip_eval.leaderboard.measured import LeaderboardInputError

    results = tmp_path / "results"
    (results / "compute").mkdir(parents=True)
    assert "| computed |" not in build_leaderboards(results, figure=False)["table2.md"]  # no file, no computed rows
    compute = json.loads((REPO / "leaderboards" / "results" / "compute" / "table2.json").read_text())
    row = next(r for r in compute["rows"] if r["model"] == "reclip-64" and r["paper_gflops"] is not None)
    row["gmacs"] = 99.0
    (results / "compute" / "table2.json").write_text(json.dumps(compute))
    shutil.copy(REPO / "leaderboards" / "results" / "reclip-demo__shapes-zeroshot.json", results)
    files = build_leaderboards(results, figure=False)
    line = next(line for line in files["table2.md"].splitlines() if "reclip-64 (64 px, text 16)" in line)
    assert [c.strip() for c in line.split("|")[1:-1]] == ["computed", "reclip-64 (64 px, text 16)", "99.00"]
    assert "compute" not in files["models.md"]  # the compute file is no evaluated model
    compute["selection"] = {"model": "reclip-64"}
    (results / "compute" / "table2.json").write_text(json.dumps(compute))
    with pytest.raises(LeaderboardInputError, match="table2.json: counts"):
        build_leaderboards(results, figure=False)


_CLAIMS_MINIATURE = """note: toy
evaluated_with: x
tables:
  - table: 1
    note: t1
    rows:
      - {label: mini A, trained_with: [a], source: {models: [runs/a, runs/a-s1, runs/a-s2], image_size: 64}}
      - {label: mini B, trained_with: [b], source: {models: [runs/b, runs/b-s1, runs/b-s2], image_size: 64}}
      - {label: mini C, trained_with: [c], source: {models: [runs/c], image_size: 64}}
      - {label: mini D, trained_with: [d], source: {models: [runs/d], image_size: 64}}
    claims:
      - {claim: A matches B, paper: "Table 1, Section 4.1", metric: imagenet/top1, a: {row: mini A},
         b: {row: mini B}, expect: at_least, margin: 1.0}
      - {claim: C equals B, paper: Table 1, metric: imagenet/top1, a: {row: mini C}, b: {row: mini B},
         expect: within}
      - {claim: D beats B, paper: Table 1, metric: imagenet/top1, a: {row: mini D}, b: {row: mini B}, expect: more}
  - table: 5
    note: t5
    rows:
      - label: mini A
        trained_with: [a]
        sources:
          before_finetune: {models: [runs/a/lowres, runs/a-s1/lowres, runs/a-s2/lowres], image_size: 32}
          after_finetune: {models: [runs/a, runs/a-s1, runs/a-s2], image_size: 64}
    claims:
      - {claim: the finetune helps, paper: "Table 5", metric: imagenet/top1,
         a: {row: mini A, source: after_finetune}, b: {row: mini A, source: before_finetune}, expect: more}
"""


def _claims_world(tmp_path, miniature: str = _CLAIMS_MINIATURE):
    """Three seeds of A and B (and A's lowres stage), one seed of C, none of D; the miniature file beside them."""
    results = tmp_path / "results"
    results.mkdir()
    top1 = {"runs/a": 0.30, "runs/a-s1": 0.32, "runs/a-s2": 0.31, "runs/b": 0.25, "runs/b-s1": 0.27,
            "runs/b-s2": 0.24, "runs/c": 0.26}
    for model, value in top1.items():
        _write(results, _result("shapes-zeroshot", model, 64, {"top1": value}))
    for model, value in {"runs/a/lowres": 0.10, "runs/a-s1/lowres": 0.15, "runs/a-s2/lowres": 0.12}.items():
        _write(results, _result("shapes-zeroshot", model, 32, {"top1": value}))
    (tmp_path / "miniature.yaml").write_text(miniature)
    return results


def test_claims_render_as_verdicts_under_the_miniature_rows(tmp_path):
    from scipy import stats

    files = build_leaderboards(_claims_world(tmp_path), figure=False)
    a, b = [30.0, 32.0, 31.0], [25.0, 27.0, 24.0]
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval()
    table1 = files["table1.md"].splitlines()
    start = next(i for i, line in enumerate(table1) if line.startswith("Verdicts"))
    assert start > next(i for i, line in enumerate(table1) if line.startswith("| miniature | mini D"))
    assert table1[start + 2:start + 8] == [
        '- **A matches B** (paper: Table 1, Section 4.1; imagenet/top1, a = "mini A", b = "mini B"; expected '
        "a - b >= -1)",
        f"  reproduces: +5.67 points, 95% CI [{welch.low:.2f}, {welch.high:.2f}] (Welch, 3 vs 3 seeds)",
        '- **C equals B** (paper: Table 1; imagenet/top1, a = "mini C", b = "mini B"; expected |a - b| <= 0)',
        "  inconclusive: +0.67 points (too few seeds for an interval)",
        '- **D beats B** (paper: Table 1; imagenet/top1, a = "mini D", b = "mini B"; expected a - b > 0)',
        '  no verdict: no results yet for "mini D" (every seed is needed)']
    # Two sources of one row with the same seeds: the paired interval on the per-seed differences.
    paired = stats.ttest_rel(a, [10.0, 15.0, 12.0]).confidence_interval()
    assert (f"  reproduces: +18.67 points, 95% CI [{paired.low:.2f}, {paired.high:.2f}] (paired, 3 seeds)"
            in files["table5.md"].splitlines())
    assert '(after_finetune), b = "mini A" (before_finetune); expected a - b > 0)' in files["table5.md"]
    assert "Verdicts" not in files["table10.md"]  # no claims, no list


FIRST_OF_TABLE_1, FIRST_OF_TABLE_5 = 'table 1, claims[0] ("A matches B")', 'table 5, claims[0] ("the finetune helps")'


@pytest.mark.parametrize("change, where, key", [
    (("a: {row: mini A}", "a: {row: mini Z}"), FIRST_OF_TABLE_1, "a.row: 'mini Z' is not a row of this table"),
    (("source: before_finetune}", "source: during_finetune}"), FIRST_OF_TABLE_5,
     "b.source: 'during_finetune' is not a source of row 'mini A'"),
    (("expect: at_least", "expect: atleast"), FIRST_OF_TABLE_1,
     "expect: 'atleast' is not one of at_least, more, within"),
    (("metric: imagenet/top1, a: {row: mini A},", "metric: imagenet/top5, a: {row: mini A},"), FIRST_OF_TABLE_1,
     "metric: 'imagenet/top5' is not a column of Table 1; did you mean 'imagenet/top1'?"),
])
def test_a_bad_claim_is_one_line_naming_file_table_claim_and_key_before_anything_is_written(
        tmp_path, capsys, change, where, key):
    results = _claims_world(tmp_path, _CLAIMS_MINIATURE.replace(*change, 1))
    out = tmp_path / "boards"
    assert main(["leaderboard", "--results", str(results), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'miniature.yaml'}: {where}: {key}") and "\n" not in err
    assert not out.exists()


def test_figure_error_bars_are_the_points_intervals():
    from reclip_eval.leaderboard.claims import mean_interval
    from reclip_eval.leaderboard.figure import Point, render_figure_png

    ci = mean_interval([20.0, 25.0, 30.0])
    with_bars = Point("mini A", "mini A", 2.0, ci.estimate, 50.0, ci, None)
    without = Point("mini A", "mini A", 2.0, ci.estimate, 50.0)
    assert render_figure_png([], [with_bars]) != render_figure_png([], [without])


def test_extra_columns_show_a_synthetic_task_for_miniature_rows_only(tmp_path):
    """A miniature table may add columns the paper lacks (the fine-texture task): its rows fill them, a claim may
    name them, and a results file on such a task never joins the paper's table as a real-dataset row."""
    results = tmp_path / "results"
    results.mkdir()
    for model, top1 in (("runs/a", 0.5), ("runs/a-s1", 0.7), ("runs/b", 0.2), ("runs/b-s1", 0.3)):
        _write(results, _result("shapes-texture", model, 64, {"top1": top1}))
    _write(results, _result("shapes-texture", "someone/else", 64, {"top1": 0.9}))
    (tmp_path / "miniature.yaml").write_text(
        "note: toy\nevaluated_with: x\ntables:\n"
        "  - table: 1\n    note: t1\n"
        "    extra_columns: [{key: shapes-texture/top1, title: fine texture top-1}]\n"
        "    claims:\n"
        "      - {claim: A beats B on texture, paper: nowhere, metric: shapes-texture/top1, a: {row: mini A},"
        " b: {row: mini B}, expect: more}\n"
        "    rows:\n"
        "      - {label: mini A, trained_with: [train a], source: {models: [runs/a, runs/a-s1], image_size: 64}}\n"
        "      - {label: mini B, trained_with: [train b], source: {models: [runs/b, runs/b-s1], image_size: 64}}\n")
    table1 = build_leaderboards(results, figure=False)["table1.md"]
    header = next(line for line in table1.splitlines() if line.startswith("| source"))
    assert header.split("|")[-4].strip() == "fine texture top-1"  # after the paper's columns, before compute
    row_a = [c.strip() for c in next(line for line in table1.splitlines() if "| mini A" in line).split("|")]
    assert row_a[-4].startswith("60.00 [") and "†" not in row_a[-4]  # the task itself, not a twin
    paper_row = [c.strip() for c in next(line for line in table1.splitlines() if line.startswith("| paper")).split("|")]
    assert paper_row[-4] == ""
    assert "someone/else" not in table1
    assert "A beats B on texture" in table1 and "(Welch, 2 vs 2 seeds)" in table1


_COMPARISON = (
    "note: toy\nevaluated_with: x\ntables: []\ncomparisons:\n"
    "  - name: siblings\n    title: Siblings\n    note: at equal compute\n"
    "    columns: [{key: steps, title: steps}, {key: imagenet/top1, title: zero-shot top-1}]\n"
    "    paper_tables: [{paper: flip, table: Table 2}]\n"
    "    claims:\n"
    "      - {claim: A beats B, paper: somewhere, metric: imagenet/top1, a: {row: A}, b: {row: B}, expect: more}\n"
    "    rows:\n"
    "      - {label: A, trained_with: [train a], values: {steps: 10},"
    " source: {models: [runs/a, runs/a-s1, runs/a-s2], image_size: 64}}\n"
    "      - {label: B, trained_with: [train b], values: {steps: 20},"
    " source: {models: [runs/b, runs/b-s1, runs/b-s2], image_size: 64}}\n")


def _comparison_world(tmp_path, miniature=_COMPARISON):
    results = tmp_path / "results"
    results.mkdir()
    for model, value in {"runs/a": 0.40, "runs/a-s1": 0.42, "runs/a-s2": 0.41, "runs/b": 0.25, "runs/b-s1": 0.27,
                         "runs/b-s2": 0.24}.items():
        _write(results, _result("shapes-zeroshot", model, 64, {"top1": value}))
    (tmp_path / "miniature.yaml").write_text(miniature)
    return results


def test_a_comparison_renders_its_rows_verdicts_plot_and_the_reported_tables_beside_it(tmp_path):
    """A comparison (the siblings at equal compute) is its own leaderboard file: literal and measured columns with
    CIs, its claims' verdicts, a plot of its rows against compute, and the papers' tables it names, with sources."""
    from scipy import stats

    files = build_leaderboards(_comparison_world(tmp_path))
    page = files["siblings.md"]
    assert files["siblings.png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert "- [Siblings](siblings.md) (miniature)" in files["README.md"]
    row_a = [c.strip() for c in next(line for line in page.splitlines() if line.startswith("| miniature | A")).split("|")]
    assert row_a[3] == "10" and row_a[4].startswith("41.00 [") and row_a[4].endswith("]†")
    welch = stats.ttest_ind([40.0, 42.0, 41.0], [25.0, 27.0, 24.0], equal_var=False).confidence_interval()
    assert f"  reproduces: +15.67 points, 95% CI [{welch.low:.2f}, {welch.high:.2f}] (Welch, 3 vs 3 seeds)" in page
    assert "Verdicts of the claims on these rows" in page
    assert "![Siblings](siblings.png)" in page
    # The reported table beside it, under its paper's source: FLIP's Table 2 (transcribed from the paper).
    assert "### Table 2: Zero-shot ImageNet-1K top-1 (%), 32 epochs of LAION-400M" in page
    assert "| L/16  | 74.3   | 72.4               |" in page
    assert "Source: Li, Fan, Hu, Feichtenhofer, He. Scaling Language-Image Pre-training via Masking" in page


@pytest.mark.parametrize("change, key", [
    (("metric: imagenet/top1, a: {row: A}", "metric: imagenet/top5, a: {row: A}"),
     "claims[0] (\"A beats B\"): metric: 'imagenet/top5' is not a column of comparison 'siblings'; did you mean "
     "'imagenet/top1'?"),
    (("b: {row: B}", "b: {row: C}"), "claims[0] (\"A beats B\"): b.row: 'C' is not a row of this table; rows: 'A', 'B'"),
    (("{paper: flip, table: Table 2}", "{paper: flip, table: Table 3}"),
     "paper_tables[0]: table: 'Table 3' is not a table of paper/flip_tables.yaml; did you mean 'Table 2'?"),
    (("{paper: flip, table: Table 2}", "{paper: flop, table: Table 2}"),
     "paper_tables[0]: paper: no file paper/flop_tables.yaml under leaderboards/"),
])
def test_a_bad_comparison_is_one_line_naming_file_comparison_and_key_before_anything_is_written(
        tmp_path, capsys, change, key):
    results = _comparison_world(tmp_path, _COMPARISON.replace(*change, 1))
    out = tmp_path / "boards"
    assert main(["leaderboard", "--results", str(results), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'miniature.yaml'}: comparison 'siblings', {key}"
    assert not out.exists()
