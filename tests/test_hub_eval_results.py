"""`.eval_results/*.yaml` (the Hub's evaluation-results format) pushed beside the card's model-index, end to end:
real results JSON (evaluations of the pushed checkpoint on a CLIP_benchmark wds set written by its own exporter, read
from a local folder and from the Hugging Face cache), the real huggingface_hub client, the local Hub server
(tests/hub_server.py). huggingface_hub's own parser (parse_eval_result_entries) reads the files back."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from reclip_eval.eval.results import results_filename
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.tasks import load_task
from reclip_eval.zoo.resolve import load_adapter
from tests import test_clip_benchmark_wds as wds_tests
from tests import test_hub

Client = test_hub.Client
hub = test_hub.hub
client = test_hub.client
HUB_SET = "clip-benchmark/wds_flickr30k"
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def checkpoint_with_results(tiny_checkpoint, synth_dir, tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """The tiny checkpoint with three real results: flickr30k from CLIP_benchmark's shards in a folder and in the HF
    cache (hf-datasets:), and shapes-retrieval (synthetic: no Hub dataset)."""
    from huggingface_hub import constants

    tmp = tmp_path_factory.mktemp("evalres")
    wds = wds_tests._export_retrieval(synth_dir, tmp / "flickr30k")
    repo = tmp / "hub" / f"datasets--{HUB_SET.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    shutil.copytree(wds, repo / "snapshots" / REVISION)
    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp / "ckpt"))
    adapter = load_adapter(str(ckpt))
    runs = [("flickr30k", wds.parent, "flickr30k"), ("flickr30k", f"hf-datasets:{HUB_SET}", "flickr30k-cached"),
            ("shapes-retrieval", synth_dir, "shapes-retrieval")]
    results = {}
    cache = constants.HF_HUB_CACHE
    constants.HF_HUB_CACHE = str(tmp / "hub")
    try:
        for task, data_dir, name in runs:
            data = evaluate(adapter, load_task(task), EvalOptions(data_dir=data_dir, workers=0),
                            argv=["--model", str(ckpt), "--task", task])
            path = f"results/{results_filename('tiny', name)}"
            (ckpt / path).parent.mkdir(exist_ok=True)
            (ckpt / path).write_text(json.dumps(data))
            results[path] = data
    finally:
        constants.HF_HUB_CACHE = cache
    return ckpt, results


def _eval_files(hub, repo_id: str) -> dict[str, bytes]:
    _, files = hub.store.files_at(repo_id, "main")
    return {name: hub.store.blob(oid) for name, oid in files.items() if name.startswith(".eval_results/")}


def test_push_writes_eval_results_files_that_equal_the_results(hub, client, checkpoint_with_results, tmp_path):
    from huggingface_hub import parse_eval_result_entries

    ckpt, results = checkpoint_with_results
    out = client.cli("push-to-hub", ckpt, "org/tiny")
    assert out.returncode == 0, out.stderr
    local, cached, synthetic = results  # flickr30k from a folder, from the HF cache, shapes-retrieval
    assert results[cached]["task"]["data_fingerprint"] == f"hf-datasets:{HUB_SET}"
    assert f"no .eval_results file for {synthetic}: task 'shapes-retrieval' was not read from a Hub dataset" \
        in out.stdout
    files = _eval_files(hub, "org/tiny")
    assert set(files) == {f".eval_results/{Path(p).stem}.yaml" for p in (local, cached)}
    for path in (local, cached):
        data = results[path]
        text = files[f".eval_results/{Path(path).stem}.yaml"].decode()
        assert "!!python" not in text  # safe_dump: plain YAML
        entries = parse_eval_result_entries(yaml.safe_load(text))
        # One entry per metric, each value exactly the results JSON's.
        assert {e.task_id: e.value for e in entries} == data["metrics"]
        for e in entries:
            assert e.dataset_id == HUB_SET  # the local folder is flickr30k's CLIP_benchmark set, as the cache is
            assert e.date == data["run"]["finished_at"]
            assert e.source_url == f"{hub.url}/org/tiny/blob/main/{path}"
            assert "reclip-eval task flickr30k (retrieval" in e.notes and data["run"]["command"] in e.notes
    # The card's model-index is still there (rendered beside them: this checkpoint has no README.md).
    _, repo_files = hub.store.files_at("org/tiny", "main")
    card = hub.store.blob(repo_files["README.md"]).decode()
    assert "model-index:" in card

    # Pushing the same checkpoint again: the same bytes, so no commit.
    posts = test_hub._commit_posts(hub, "org/tiny")
    [again] = client.push("org/tiny", ckpt)
    assert not again["changed"] and test_hub._commit_posts(hub, "org/tiny") == posts
    assert _eval_files(hub, "org/tiny") == files

    # Someone else's file in .eval_results/ stays; ours go with the results they were written for.
    upload = textwrap.dedent("""
        from huggingface_hub import HfApi
        HfApi().upload_file(path_or_fileobj=b"- dataset: {id: cais/hle, task_id: hle}\\n  value: 1.0\\n",
                            path_in_repo=".eval_results/community.yaml", repo_id="org/tiny")
    """)
    assert client.python(upload).returncode == 0
    fewer = Path(shutil.copytree(ckpt, tmp_path / "fewer"))
    (fewer / cached).unlink()
    [pushed] = client.push("org/tiny", fewer)
    assert pushed["deleted"] == [f".eval_results/{Path(cached).stem}.yaml", cached]
    assert set(_eval_files(hub, "org/tiny")) == {f".eval_results/{Path(local).stem}.yaml",
                                                 ".eval_results/community.yaml"}


def test_a_results_file_off_the_schema_gets_no_eval_results_file():
    from reclip_eval.cards.eval_results import eval_result_files

    made = eval_result_files({"results/x.json": {"metrics": {"top1": 0.5}}}, repo_url="u", revision="main")
    assert made.files == {} and made.left_out["results/x.json"].startswith("not a valid results file: ")


def test_each_named_clip_benchmark_set_is_one_its_task_reads():
    """A paper task's results are filed under a CLIP_benchmark set only where the task reads that set's layout."""
    from reclip_eval.cards.eval_results import CLIP_BENCHMARK_SETS

    for name, dataset_id in CLIP_BENCHMARK_SETS.items():
        kinds = [layout.kind for layout in load_task(name).data.layouts]
        assert any(kind.startswith("clip_benchmark_wds") for kind in kinds), (name, kinds)
        assert dataset_id.startswith("clip-benchmark/wds_")
