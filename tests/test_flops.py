"""Compute accounting: the FLOP counter's convention is pinned analytically, and Table 2 is reproduced."""

import pytest

from reclip_eval.compute import table2_rows
from reclip_eval.models.flops import count_sample_compute
from reclip_eval.models.presets import build_config

from .conftest import REPO


def _transformer_macs(tokens, width, layers, mlp_ratio=4.0):
    per_layer = tokens * width * 3 * width + tokens * width * width  # qkv + output projection
    per_layer += 2 * tokens * width * int(width * mlp_ratio)  # MLP
    per_layer += 2 * tokens * tokens * width  # q @ k^T and attn @ v
    return layers * per_layer


def test_counter_matches_the_analytic_mac_count():
    config = build_config("tiny")  # image: patch 8, width 32, 2 layers; text: width 32, 2 layers; embed 32
    compute = count_sample_compute(config, image_size=32, text_length=16)
    grid = (32 // 8) ** 2
    image = grid * 3 * 8 * 8 * 32 + _transformer_macs(grid, 32, 2) + 32 * 32  # patch embed, blocks, projection
    text = _transformer_macs(16, 32, 2) + 32 * 32
    assert compute.image_gmacs * 1e9 == pytest.approx(image, rel=1e-9)
    assert compute.text_gmacs * 1e9 == pytest.approx(text, rel=1e-9)


def test_paper_table_2_within_2_percent():
    """71.4 / 24.8 / 10.1 / 7.3 GFLOPs: ViT-L/16, GAP pooling, text length 64 (CLIP repro, RECLIP-112) or 16."""
    main_rows = {r["model"]: r for r in table2_rows() if r["paper_gflops"] is not None}
    assert set(main_rows) == {"clip-repro-224", "reclip-112", "reclip-80", "reclip-64"}
    for row in main_rows.values():
        assert abs(row["diff_percent"]) < 2.0, row


def test_committed_compute_file_is_what_the_model_definitions_count():
    """The leaderboard reads Table 2's rows from this file instead of counting: it must not drift from the code."""
    from reclip_eval.compute import count_compute
    from reclip_eval.compute_results import TABLE2, compute_results_path, differences, read_compute_results

    committed = read_compute_results(compute_results_path(REPO / "leaderboards" / "results", TABLE2))
    fresh = count_compute()
    assert fresh["selection"] == TABLE2 and fresh["run"]["command"] == "reclip-eval flops"
    assert differences(committed, fresh) == [], "run `reclip-eval flops` and commit the compute file"
    assert committed["rows"] == fresh["rows"]


def test_flops_writes_its_rows_once_and_never_replaces_other_rows_silently(tmp_path, capsys):
    import json

    from reclip_eval.cli.main import main

    out = tmp_path / "results"
    path = out / "compute" / "recipe__mini-reclip-32.json"
    assert main(["flops", "--recipe", "mini-reclip-32", "--output", str(out)]) == 0
    written = json.loads(path.read_text())
    assert written["kind"] == "compute" and written["selection"] == {"recipe": "mini-reclip-32"}
    assert written["run"]["command"] == "reclip-eval flops --recipe mini-reclip-32"
    assert "reclip-eval" in written["run"]["software"]
    assert [r["stage"] for r in written["rows"]] and all(r["gmacs"] > 0 for r in written["rows"])
    assert not list(out.glob("*.json"))  # nothing where evaluation results go

    # Another software version or commit is the same count: the file stays byte for byte.
    written["run"]["software"] = {"reclip-eval": "0.0.0"}
    path.write_text(json.dumps(written))
    before = path.read_bytes()
    assert main(["flops", "--recipe", "mini-reclip-32", "--output", str(out)]) == 0
    assert path.read_bytes() == before and "kept" in capsys.readouterr().out

    # Other rows are refused, naming the row and field, until --overwrite.
    written["rows"][0]["gmacs"] = 1.0
    path.write_text(json.dumps(written))
    before = path.read_bytes()
    assert main(["flops", "--recipe", "mini-reclip-32", "--output", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"{written['rows'][0]['model']} {written['rows'][0]['stage']} gmacs: 1.0 in the file" in error
    assert "--overwrite" in error and path.read_bytes() == before
    assert main(["flops", "--recipe", "mini-reclip-32", "--output", str(out), "--overwrite"]) == 0
    assert "replaced" in capsys.readouterr().out
    assert json.loads(path.read_text())["rows"][0]["gmacs"] != 1.0


def test_a_file_of_another_kind_is_not_replaced(tmp_path):
    import pytest

    from reclip_eval.compute_results import store_compute_results
    from reclip_eval.errors import ResultsConflictError

    path = tmp_path / "compute" / "table2.json"
    path.parent.mkdir()
    path.write_text('{"model": {"id": "x"}, "metrics": {}}')
    results = {"kind": "compute", "selection": {"models": "paper Table 2"}, "rows": []}
    with pytest.raises(ResultsConflictError, match="not a compute results file"):
        store_compute_results(results, path)
    assert store_compute_results(results, path, overwrite=True)[0] == "replaced"


def test_non_square_image_counts_its_patches():
    config = build_config("tiny")
    wide, tall = (count_sample_compute(config, size, 16).image_gmacs for size in ((32, 64), (64, 32)))
    small, big = (count_sample_compute(config, size, 16).image_gmacs for size in (32, 64))
    assert wide == tall and small < wide < big
