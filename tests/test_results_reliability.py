"""Results files are checked against one schema wherever they are read, created exclusively, and their text is data
in every markdown we render (Reliability, third round)."""

from __future__ import annotations

import json
import multiprocessing
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from reclip_eval.cli.main import main
from reclip_eval.errors import ReclipError, ResultsConflictError
from reclip_eval.eval.results_schema import FIELDS, InvalidResultsError, read_results, validate_results
from reclip_eval.eval.results_store import store_results
from reclip_eval.leaderboard.build import build_leaderboards

from .conftest import REPO

COMMITTED = REPO / "leaderboards" / "results" / "reclip-demo__shapes-zeroshot.json"


def _valid() -> dict:
    return json.loads(COMMITTED.read_text())


def _leaderboard(capsys, results: Path, out: Path) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["leaderboard", "--results", str(results), "--out", str(out)])
    return code, capsys.readouterr().err


def _set(data: dict, dotted: str, value) -> dict:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[leaf] = value
    return data


# --- one schema, checked when read ------------------------------------------------------------------------------

MALFORMED = [  # (what the file holds, the key the error must name)
    (_set(_valid(), "metrics.top1", True), "metrics.top1"),  # rendered as 100.00
    (_set(_valid(), "metrics.top1", 85.3), "metrics.top1"),  # a percentage: rendered as 8530.00
    (_set(_valid(), "metrics.top1", -0.2), "metrics.top1"),  # rendered as -20.00
    (_set(_valid(), "metrics.top1", float("nan")), "metrics.top1"),  # rendered as nan
    (_set(_valid(), "metrics.top5", float("inf")), "metrics.top5"),
    (_set(_valid(), "metrics.top1", -1.0), "metrics.top1"),  # LVIS's -1 is for detection results only
    (_set(_valid(), "metrics.top1", "0.85"), "metrics.top1"),  # tracebacks before
    (_set(_valid(), "metrics.top1", None), "metrics.top1"),
    ({k: v for k, v in _valid().items() if k != "model"}, "model"),
    (_set(_valid(), "model.image_size", "64"), "model.image_size"),
    (_set(_valid(), "model.compute.image_gmacs", "fast"), "model.compute.image_gmacs"),
    (_set(_valid(), "task.kind", "zeroshot"), "task.kind"),
    (_set(_valid(), "metrics", {"top5": 0.9}), "metrics.top1"),  # the kind's headline metric is missing
    (_set(_valid(), "run.command", ["reclip-eval"]), "run.command"),
    ([_valid()], "top level is list"),
    (None, "top level is null"),
]


@pytest.mark.parametrize("data, key", MALFORMED, ids=[k for _, k in MALFORMED])
def test_a_malformed_results_file_is_refused_naming_file_and_key_never_rendered(tmp_path, capsys, data, key):
    results, out = tmp_path / "results", tmp_path / "boards"
    results.mkdir()
    bad = results / "someone__shapes-zeroshot.json"
    bad.write_text(json.dumps(data))
    code, err = _leaderboard(capsys, results, out)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {bad}: ") and key in err
    assert not out.exists() and not (tmp_path / "model_cards").exists()  # refused before anything is written


def test_a_truncated_results_file_is_one_line(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "a__shapes-zeroshot.json").write_text(COMMITTED.read_text()[:300])
    code, err = _leaderboard(capsys, results, tmp_path / "boards")
    assert code == 2 and err.count("\n") == 1 and "a__shapes-zeroshot.json: not valid JSON" in err


def test_every_committed_results_file_follows_the_schema():
    files = sorted((REPO / "leaderboards" / "results").glob("*.json"))
    assert files and all(read_results(path) for path in files)


def test_lvis_undefined_metric_is_accepted_in_detection_results_and_shown_as_n_a(tmp_path):
    detection = _valid()
    detection["task"] = {**detection["task"], "name": "lvis", "kind": "detection"}
    detection["metrics"] = {"AP": 0.25, "APr": -1.0, "box_AP": 0.3}
    validate_results(detection, "detection.json")
    results = tmp_path / "results"
    results.mkdir()
    (results / "m__lvis.json").write_text(json.dumps(detection))
    files = build_leaderboards(results, figure=False)
    row = next(line for line in files["models.md"].splitlines() if line.startswith("| reclip-demo"))
    assert "25.00 / n/a" in row and "-100" not in files["models.md"] + files["table4.md"]


def test_a_non_square_input_size_is_valid_and_a_row_of_its_own(tmp_path):
    """A model configured with a [height, width] image size records it as a pair (models/config.py)."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "a.json").write_text(json.dumps(_valid()))
    (results / "b.json").write_text(json.dumps(_set(_valid(), "model.image_size", [64, 96])))
    models = build_leaderboards(results, figure=False)["models.md"]
    assert "| reclip-demo | 64 " in models and "| reclip-demo | 64x96 " in models
    with pytest.raises(InvalidResultsError, match=r"model.image_size: \[64, 0\]"):
        validate_results(_set(_valid(), "model.image_size", [64, 0]), "c.json")


# --- exclusive creation ------------------------------------------------------------------------------------------


def _store_after_barrier(barrier, path: str, top1: float, outcomes) -> None:
    results = _set(_valid(), "metrics.top1", top1)
    barrier.wait()
    try:
        outcomes.put(store_results(results, Path(path)).action)
    except ResultsConflictError:
        outcomes.put("refused")


@pytest.mark.parametrize("second_top1, loser", [(0.5, "refused"), (None, "kept")])
def test_two_runs_finishing_at_once_never_both_write(tmp_path, second_top1, loser):
    """Two processes released by one barrier store their results under one name, 20 times: exactly one writes; the
    other meets the winner's file under the usual rules (another number: refused; the same: kept). Before, both
    said "written" and one file silently replaced the other in 20 of 20 trials."""
    context = multiprocessing.get_context("fork")  # the children share this process's imports: fast to start
    first_top1 = _valid()["metrics"]["top1"]
    for trial in range(20):
        path = tmp_path / f"trial{trial}" / "reclip-demo__shapes-zeroshot.json"
        barrier, outcomes = context.Barrier(2), context.Queue()
        writers = [context.Process(target=_store_after_barrier, args=(barrier, str(path), top1, outcomes))
                   for top1 in (first_top1, first_top1 if second_top1 is None else second_top1)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(timeout=60)
        assert [w.exitcode for w in writers] == [0, 0]
        assert sorted(outcomes.get(timeout=5) for _ in writers) == sorted(["written", loser]), trial
        assert read_results(path)["metrics"]["top1"] in (first_top1, second_top1)
        assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


@pytest.mark.parametrize("create", ["create_text_exclusive", "_create_with_o_excl"])  # link, and no-link fallback
def test_exclusive_creation_never_touches_a_file_that_is_there(tmp_path, create):
    from reclip_eval import atomic

    path = tmp_path / "sub" / "r.json"
    path.parent.mkdir()
    assert getattr(atomic, create)(path, "first\n") is True
    assert getattr(atomic, create)(path, "second\n") is False
    assert path.read_text() == "first\n" and [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_overwrite_replaces_atomically_and_says_what_differed(tmp_path):
    path = tmp_path / "reclip-demo__shapes-zeroshot.json"
    assert store_results(_valid(), path).action == "written"
    with pytest.raises(ResultsConflictError, match="metrics.top1"):
        store_results(_set(_valid(), "metrics.top1", 0.5), path)
    stored = store_results(_set(_valid(), "metrics.top1", 0.5), path, overwrite=True)
    assert stored.action == "replaced" and any("metrics.top1" in d for d in stored.replaced)
    assert read_results(path)["metrics"]["top1"] == 0.5 and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_malformed_file_in_the_way_is_refused_naming_its_key_and_replaced_only_with_overwrite(tmp_path):
    path = tmp_path / "reclip-demo__shapes-zeroshot.json"
    path.write_text(json.dumps(_set(_valid(), "metrics.top1", 85.3)))
    with pytest.raises(ResultsConflictError, match=r"metrics\.top1: 85\.3.*--overwrite"):
        store_results(_valid(), path)
    stored = store_results(_valid(), path, overwrite=True)
    assert stored.action == "replaced" and stored.replaced == ("it was not a valid results file",)


def test_results_the_readers_would_refuse_are_never_written(tmp_path):
    path = tmp_path / "out.json"
    with pytest.raises(InvalidResultsError, match=r"metrics\.top1: NaN"):
        store_results(_set(_valid(), "metrics.top1", float("nan")), path)
    assert not path.exists()


# --- text from results files is data in markdown ----------------------------------------------------------------

HOSTILE_IDS = ["evil|x", "two\nlines", "a\n# Injected heading", "[click](https://example.com)", "<b>bold</b>",
               "`tick", "**strong** _em_", "x\r\n|---|---|\n| fake | row |"]


def _tables_and_blocks(markdown: str) -> tuple[list[list[int]], list[str]]:
    """Per table, the cell count of each row; and the block-level and inline markup tokens found."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    tables, counts, markup = [], [], []
    for token in tokens:
        if token.type == "table_open":
            counts = []
        elif token.type == "tr_open":
            counts.append(0)
        elif token.type in ("th_open", "td_open"):
            counts[-1] += 1
        elif token.type == "table_close":
            tables.append(counts)
        markup += [token.type] + [child.type for child in token.children or []]
    return tables, markup


def test_hostile_model_and_task_names_stay_text_in_the_leaderboards(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    clean = build_leaderboards(results, figure=False)
    for index, name in enumerate(HOSTILE_IDS):
        real = _set(_set(_valid(), "model.id", name), "task.name", "imagenet")  # fills Table 1's columns
        (results / f"m{index}__imagenet.json").write_text(json.dumps(_set(real, "run.command", f"run {name}")))
        twin = _set(_set(_valid(), "model.id", name), "task.name", f"shapes {name}")  # a task column of models.md
        (results / f"m{index}__twin.json").write_text(json.dumps(twin))
    files = build_leaderboards(results, figure=False)
    for name in ("models.md", "table1.md"):
        tables, markup = _tables_and_blocks(files[name])
        assert tables and all(len(set(rows)) == 1 for rows in tables), (name, tables)  # every row: header's count
        _, clean_markup = _tables_and_blocks(clean[name])
        for kind in ("heading_open", "link_open", "html_inline", "html_block", "em_open", "strong_open"):
            provenance = len(HOSTILE_IDS) if kind == "strong_open" else 0  # each model's own `**id @ 64 px**`
            assert markup.count(kind) == clean_markup.count(kind) + provenance, (name, kind)
        assert "Injected heading" in files[name] and not re.search(r"^#+ .*Injected", files[name], re.M)


# --- fuzzing the reader through the CLI ------------------------------------------------------------------------

_TEXT = COMMITTED.read_text()
_REQUIRED = [path for path, (required, _) in FIELDS.items() if required] + ["metrics.top1"]
_JSON_TYPES = {"null": st.none(), "bool": st.booleans(), "number": st.floats(allow_nan=True) | st.integers(),
               "string": st.text(max_size=5), "list": st.lists(st.integers(), max_size=2),
               "object": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)}


def _json_type(value) -> str:
    if value is None or isinstance(value, bool):
        return "null" if value is None else "bool"
    return {int: "number", float: "number", str: "string", list: "list", dict: "object"}[type(value)]


@st.composite
def _type_swaps(draw) -> str:
    data = _valid()
    path = draw(st.sampled_from(_REQUIRED))
    node = data
    for key in path.split(".")[:-1]:
        node = node[key]
    current = _json_type(node[path.split(".")[-1]])
    _set(data, path, draw(st.sampled_from(sorted(set(_JSON_TYPES) - {current})).flatmap(_JSON_TYPES.get)))
    return json.dumps(data)


_TRUNCATIONS = st.integers(0, len(_TEXT.rstrip()) - 1).map(lambda n: _TEXT[:n])


@st.composite
def _random_bytes(draw) -> bytes:
    raw = _TEXT.encode()
    start = draw(st.integers(0, len(raw) - 1))
    return raw[:start] + draw(st.binary(min_size=4, max_size=16)) + raw[start + draw(st.integers(0, 16)):]


def _fuzz(capsys, tmp_path: Path, content: str | bytes, *, must_refuse: bool) -> None:
    results = tmp_path / "results"
    results.mkdir(exist_ok=True)
    path = results / "fuzzed__shapes-zeroshot.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, err = _leaderboard(capsys, results, tmp_path / "boards")  # anything but a ReclipError escapes: a failure
    if code == 0 and not must_refuse:
        read_results(path)  # the CLI accepted it: the schema must too
        return
    assert code == 2 and err.startswith(f"error: {path}: ") and err.count("\n") == 1, (code, err)


_FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(content=_TRUNCATIONS | _type_swaps())
def test_fuzz_truncations_and_type_swaps_are_refused_in_one_line(tmp_path, capsys, content):
    _fuzz(capsys, tmp_path, content, must_refuse=True)


@_FUZZ
@given(content=_random_bytes())
def test_fuzz_random_bytes_are_refused_in_one_line_or_are_a_valid_file(tmp_path, capsys, content):
    _fuzz(capsys, tmp_path, content, must_refuse=False)


def test_read_results_names_the_file_for_what_json_cannot_parse(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ReclipError, match=r"deep\.json: not a readable results file \(RecursionError"):
        read_results(deep)
    digits = tmp_path / "digits.json"
    digits.write_text('{"schema_version": ' + "9" * 5000 + "}")
    with pytest.raises(ReclipError, match=r"digits\.json: not a readable results file \(ValueError"):
        read_results(digits)
