"""Suites and matrices (issue #33 items 4 and 6): several models by a suite's tasks in one command, resumed after a
SIGKILL without evaluating again what the results folder holds; DataComp's averages; CLIP_benchmark's collections
by name; the suite leaderboard.

The stand-in suite reads three webdataset sets written by CLIP_benchmark's own exporter (classification, multilabel,
retrieval), as tests/test_clip_benchmark_wds.py writes them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from reclip_eval.errors import ConfigError, UnknownNameError
from reclip_eval.eval.suites import load_suite, plan_tasks, suite_scores
from tests.conftest import REPO, run_cli
from tests.test_clip_benchmark_wds import SHAPES, _export_classification, _export_multilabel, _export_retrieval

# DataComp's aggregate_scores.py (mlfoundations/datacomp): its groups by tasklist.yml display name; "ImageNet" is
# ImageNet 1k alone and "Average" the mean over all 38 scored tasks.
DATACOMP_GROUPS = {
    "ImageNet dist. shifts": {"ImageNet Sketch", "ImageNet v2", "ImageNet-A", "ImageNet-O", "ImageNet-R", "ObjectNet"},
    "VTAB": {"Caltech-101", "CIFAR-100", "CLEVR Counts", "CLEVR Distance", "Describable Textures", "EuroSAT",
             "KITTI Vehicle Distance", "Oxford Flowers-102", "Oxford-IIIT Pet", "PatchCamelyon", "RESISC45", "SVHN",
             "SUN397"},
    "Retrieval": {"Flickr", "MSCOCO", "WinoGAViL"},
}


def _task_yaml(folder: Path, name: str, kind: str, layout: str) -> str:
    (folder / f"{name}.yaml").write_text(
        f"name: {name}\nkind: {kind}\ndescription: a stand-in set written by CLIP_benchmark's exporter\n"
        f"data: {{folder: {name}, layouts: [{{kind: {layout}, split: test}}]}}\n"
        f"classes: {SHAPES.resource(SHAPES.classes)}\ntemplates: {SHAPES.resource(SHAPES.templates)}\n"
        "get_data: exported by the test\n")
    return f"{name}.yaml"


def _entry(task: str | None, key: str, main_metric: str, metric: list[str] | None, tags: list[str],
           refused: str | None = None) -> dict:
    return {"task": task, "key": key, "title": key.title(), "main_metric": main_metric, "metric": metric,
            "tags": tags, "refused": refused}


@pytest.fixture(scope="module")
def stand_in(synth_dir, tmp_path_factory) -> tuple[Path, Path]:
    """(the stand-in suite's YAML, its data root): shapes as classification and multilabel sets, flickr30k as the
    retrieval set (read by the real flickr30k task), and an entry refused as DataComp's WinoGAViL is."""
    root = tmp_path_factory.mktemp("suite")
    data = root / "data"
    _export_classification(synth_dir, data / "shapes-wds")
    _export_multilabel(synth_dir, data / "shapes-wds-ml")
    _export_retrieval(synth_dir, data / "flickr30k")
    classification = _task_yaml(root, "shapes-wds", "zeroshot_classification", "clip_benchmark_wds")
    multilabel = _task_yaml(root, "shapes-wds-ml", "multilabel", "clip_benchmark_wds_multilabel")
    suite = {
        "name": "stand-in", "description": "three CLIP_benchmark wds sets",
        "source": {"repo": "LAION-AI/CLIP_benchmark", "commit": "0" * 40, "files": ["webdataset_builder.py"]},
        "tasks": [_entry(classification, "wds/shapes", "acc1", ["top1"], ["shapes"]),
                  _entry(multilabel, "wds/shapes_ml", "mean_average_precision", ["mAP"], ["shapes"]),
                  _entry("flickr30k", "retrieval/flickr", "mean_recall@1", ["i2t_R@1", "t2i_R@1"], ["retrieval"]),
                  _entry(None, "misc/game", "jaccard", None, ["retrieval"], refused="no task kind reads it")],
        "unscored": [],
        "averages": {"Shapes": [classification, multilabel], "Retrieval": ["flickr30k", "misc/game"],
                     "Scored here": [classification, multilabel, "flickr30k"]},
    }
    path = root / "stand-in.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path, data


def _stored_lines(stderr: str, action: str) -> set[str]:
    """The results files a run's summary lines say were `action` ("written: P", "not evaluated again: P")."""
    return {Path(m).name for m in re.findall(rf"{re.escape(action)}: (\S+\.json)$", stderr, flags=re.M)}


@pytest.fixture(scope="module")
def resumed(stand_in, tiny_checkpoint, tmp_path_factory) -> dict:
    """Two models by the stand-in suite: killed with SIGKILL once its first results file exists, then rerun."""
    suite, data = stand_in
    out = tmp_path_factory.mktemp("results")
    env = {**os.environ, "RECLIP_CACHE": str(tmp_path_factory.mktemp("cache"))}
    argv = ["--model", f"reclip-demo,{tiny_checkpoint}", "--task", str(suite), "--data-dir", str(data),
            "--output", str(out), "--workers", "0", "--batch-size", "32"]
    killed = subprocess.Popen([sys.executable, "-m", "reclip_eval", *argv], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not list(out.glob("*.json")) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*.json")}
    rerun = run_cli(*argv, env=env)
    return {"out": out, "before": before, "killed_rc": killed.returncode, "rerun": rerun}


def test_a_killed_suite_resumes_and_computes_only_what_was_missing(resumed):
    rerun, before, out = resumed["rerun"], resumed["before"], resumed["out"]
    assert resumed["killed_rc"] == -signal.SIGKILL  # killed mid-way, not finished
    assert rerun.returncode == 0, rerun.stderr
    final = {p.name for p in out.glob("*.json")}
    assert len(final) == 2 * 3  # two models by the three runnable tasks
    assert 1 <= len(before) < len(final)
    assert _stored_lines(rerun.stderr, "not evaluated again") == set(before)
    assert _stored_lines(rerun.stderr, "written") == final - set(before)
    for name, (mtime, content) in before.items():  # the files found were left as they were
        assert ((out / name).stat().st_mtime_ns, (out / name).read_bytes()) == (mtime, content)
    assert "stand-in: Misc/Game (misc/game) not evaluated: no task kind reads it" in rerun.stderr


def test_the_summary_table_holds_each_score_and_the_averages(resumed, stand_in):
    suite = load_suite(str(stand_in[0]))
    out, stdout = resumed["out"], resumed["rerun"].stdout
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    by_model: dict[str, dict] = {}
    for r in results:
        by_model.setdefault(r["model"]["id"], {})[r["task"]["name"]] = r
    header = next(line for line in stdout.splitlines() if line.startswith("| task"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[1] == "reclip-demo" and set(columns[1:]) == set(by_model)  # a column per model, --model order
    for model, tasks in by_model.items():
        scores, averages = suite_scores(suite, tasks)
        flickr = tasks["flickr30k"]["metrics"]
        assert scores["flickr30k"] == pytest.approx((flickr["i2t_R@1"] + flickr["t2i_R@1"]) / 2)
        shapes = [scores[e["task"]] for e in yaml.safe_load(stand_in[0].read_text())["tasks"][:2]]
        by_name = {a.name: a for a in averages}
        assert by_name["Shapes"].value == pytest.approx(np.mean(shapes))
        assert by_name["Retrieval"].value is None and by_name["Retrieval"].present == 1  # the refused member
        column = columns.index(model)
        row = next(line for line in stdout.splitlines() if line.startswith("| stand-in: Shapes"))
        assert row.strip("|").split("|")[column].strip() == f"{100 * by_name['Shapes'].value:.2f}"


def test_a_changed_task_is_evaluated_again_not_skipped(resumed, stand_in, tmp_path):
    """The resume check compares the task's spec: an edited task YAML is measured again (and then, the data and
    prompts being the same, the store keeps the file)."""
    from reclip_eval.api import ResultsFiles, evaluate_tasks, load
    from reclip_eval.eval.runner import EvalOptions
    from reclip_eval.eval.tasks import load_task

    suite, data = stand_in
    edited = tmp_path / "shapes-wds.yaml"
    edited.write_text((suite.parent / "shapes-wds.yaml").read_text().replace("a stand-in set", "an edited set"))
    adapter = load("reclip-demo")
    files = ResultsFiles(resumed["out"])
    options = EvalOptions(data_dir=data, workers=0, batch_size=64)
    for task, action in ((load_task(str(suite.parent / "shapes-wds.yaml")), "skipped"), (load_task(str(edited)), "kept")):
        [(_, stored)] = list(evaluate_tasks(adapter, [task], options, files, resume=True))
        assert stored.action == action


def test_the_suite_leaderboard_renders_from_the_results(resumed, stand_in):
    from reclip_eval.leaderboard.measured import load_measured
    from reclip_eval.leaderboard.suite import render_suite

    out = resumed["out"]
    page = render_suite(load_suite(str(stand_in[0])), load_measured(out))
    shown = run_cli("leaderboard", "--suite", str(stand_in[0]), "--results", str(out))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == page
    flickr = json.loads(next(out.glob("reclip-demo__flickr30k.json")).read_text())["metrics"]
    row = next(line for line in page.splitlines() if line.startswith("| Retrieval/Flickr"))
    assert f"{100 * (flickr['i2t_R@1'] + flickr['t2i_R@1']) / 2:.2f}" in row
    assert next(line for line in page.splitlines() if line.startswith("| Misc/Game")).count("refused") == 2
    assert "3 of 3" in page and "(1 of 2 tasks)" in page  # the incomplete average is not a number


def _datacomp_complete(tmp_path: Path) -> Path:
    """DataComp's suite with each entry refused here scored by a stand-in task instead (so all 38 have scores)."""
    suite = yaml.safe_load((REPO / "tasks" / "suites" / "datacomp.yaml").read_text())
    for entry in suite["tasks"]:
        if entry["refused"] is None:
            continue
        old = entry["task"] or entry["key"]
        name = re.sub(r"\W", "-", entry["key"])
        entry.update(task=_task_yaml(tmp_path, name, "zeroshot_classification", "clip_benchmark_wds"),
                     metric=["top1"], refused=None)
        suite["averages"] = {k: [entry["task"] if m == old else m for m in v] for k, v in suite["averages"].items()}
    path = tmp_path / "datacomp-complete.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def _datacomp_oracle(scores_by_title: dict[str, float]) -> dict[str, float]:
    """DataComp's aggregate_scores.get_aggregate_scores, computed independently from its definitions."""
    assert len(scores_by_title) == 38
    return {"ImageNet": scores_by_title["ImageNet 1k"],
            **{group: float(np.mean([scores_by_title[t] for t in titles])) for group, titles in DATACOMP_GROUPS.items()},
            "Average": float(np.mean(list(scores_by_title.values())))}


def test_datacomp_averages_are_computed_as_datacomp_computes_them(tmp_path):
    suite = load_suite(str(_datacomp_complete(tmp_path)))
    draw = np.random.default_rng(0)
    results, by_title = {}, {}
    for entry, spec in suite.runnable():
        metrics = {name: float(draw.uniform(0, 1)) for name in ("top1", "top5", "mean_per_class_recall", "i2t_R@1",
                                                                 "t2i_R@1", "f1_macro", "top1_worst_group",
                                                                 "top5_worst_group")}
        results[spec.name] = {"metrics": metrics}
        by_title[entry.title] = float(np.mean([metrics[m] for m in entry.metric]))
    assert {e.main_metric for e in suite.tasks} >= {"acc1", "mean_per_class_recall", "mean_recall@1"}
    _, averages = suite_scores(suite, results)
    assert {a.name: a.value for a in averages} == pytest.approx(_datacomp_oracle(by_title), abs=1e-12)
    # A missing task: the averages it belongs to are not computed (DataComp refuses), the others are.
    del results["imagenet-o"]
    partial = {a.name: a for a in suite_scores(suite, results)[1]}
    assert partial["ImageNet dist. shifts"].value is None and partial["ImageNet dist. shifts"].present == 5
    assert partial["Average"].value is None and partial["VTAB"].value is not None


def test_the_committed_datacomp_suite_has_datacomps_groups():
    suite = load_suite("datacomp")
    titles = {e.member_name: e.title for e in suite.tasks}
    assert len(suite.tasks) == 38
    for group, members in DATACOMP_GROUPS.items():
        assert {titles[m] for m in suite.averages[group]} == members
    assert [titles[m] for m in suite.averages["ImageNet"]] == ["ImageNet 1k"]
    assert set(suite.averages["Average"]) == set(titles)


def test_clip_benchmark_collections_by_name():
    """`--task vtab` etc. run CLIP_benchmark's collection of that name (its builder.py dataset_collection)."""
    from clip_benchmark.datasets.builder import dataset_collection

    for name in ("vtab", "vtab+", "imagenet_robustness", "retrieval"):
        assert [e.key for e in load_suite(name).tasks] == dataset_collection[name]
    plan = plan_tasks("retrieval,shapes-zeroshot,mscoco")
    assert [t.name for t in plan.tasks] == ["mscoco", "flickr8k", "flickr30k", "shapes-zeroshot"]  # no repeats


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "reclip-demo", "--model", "reclip-64", "--task", "shapes-zeroshot"], "--model given twice"),
    (["--model", "reclip-demo,openclip:ViT-B-32", "--pretrained", "openai", "--task", "shapes-zeroshot"],
     "--pretrained would apply to each of the 2 models"),
    (["--model", "reclip-demo", "--task", "datacmp"], "Did you mean: datacomp"),
    (["--model", "reclip-demo", "--task", "vtab", "--data-dir", "hf-datasets:clip-benchmark/wds_vtab-pets"],
     "reads one set per task"),
])
def test_matrix_command_lines_are_refused_in_one_line(argv, message, capsys):
    from reclip_eval.cli.main import main

    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code == 2 and message in capsys.readouterr().err


def test_a_suite_file_with_problems_names_them(stand_in, tmp_path):
    suite = yaml.safe_load(stand_in[0].read_text())
    suite["tasks"][1]["task"] = suite["tasks"][0]["task"]
    suite["averages"]["Typo"] = ["flickr3k"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(suite))
    with pytest.raises(ConfigError) as found:
        load_suite(str(path))
    assert "is listed already" in str(found.value) and "averages.Typo: flickr3k is no entry" in str(found.value)
    with pytest.raises(UnknownNameError, match="datacomp"):
        load_suite("datacomp2")


def test_torchrun_resumes_the_same_way_and_splits_each_dataset(resumed, stand_in, tmp_path):
    """Two processes: the main one decides what is measured already and both follow; the task left is split across
    them, and its metrics equal the single-process run's."""
    import shutil

    suite, data = stand_in
    out = tmp_path / "two"
    out.mkdir()
    shutil.copy2(resumed["out"] / "reclip-demo__flickr30k.json", out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    multi = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "reclip_eval",
         "--model", "reclip-demo", "--task", f"{suite.parent / 'shapes-wds.yaml'},flickr30k", "--data-dir", str(data),
         "--output", str(out), "--workers", "0", "--batch-size", "32", "--device", "cpu"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert _stored_lines(multi.stderr, "not evaluated again") == {"reclip-demo__flickr30k.json"}
    assert _stored_lines(multi.stderr, "written") == {"reclip-demo__shapes-wds.json"}
    one, two = (json.loads((folder / "reclip-demo__shapes-wds.json").read_text()) for folder in (resumed["out"], out))
    assert two["metrics"] == one["metrics"] and two["counts"] == one["counts"]


def test_reclip_eval_tasks_lists_the_suites(capsys):
    from reclip_eval.cli.main import main

    assert main(["tasks"]) == 0
    rows = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    datacomp = load_suite("datacomp")
    assert f"{len(datacomp.runnable())} of 38" in rows["datacomp"] and "ImageNet dist. shifts" in rows["datacomp"]
    assert "| vtab+ " in rows["clip_benchmark_vtab_plus"]


def test_a_misspelt_later_model_is_refused_before_the_first_is_evaluated(tmp_path, capsys):
    from reclip_eval.cli.main import main

    for typo, message in (("reclip-dmeo", "Did you mean: reclip-demo"), ("runs/no-such", "runs/no-such: no such folder")):
        argv = ["--model", f"reclip-demo,{typo}", "--task", "shapes-zeroshot,shapes-retrieval", "--output",
                str(tmp_path), "--workers", "0"]
        assert main(argv) == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing evaluated
