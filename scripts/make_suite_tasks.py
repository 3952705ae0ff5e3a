"""Generate the tasks of CLIP_benchmark's webdataset sets and DataComp's suite from the two projects' own files.

    python scripts/make_suite_tasks.py --clip-benchmark-git DIR --datacomp-git DIR

DIR is a git directory (a bare clone is enough: files are read with `git show COMMIT:PATH`, at HEAD unless
--clip-benchmark-commit / --datacomp-commit say otherwise). It reads
  CLIP_benchmark: benchmark/webdatasets.txt (the wds sets), clip_benchmark/datasets/en_classnames.json and
                  en_zeroshot_classification_templates.json (class names, prompts), clip_benchmark/datasets/builder.py
                  (its collections, and imagenet-o's WordNet ids)
  DataComp:       tasklist.yml (the 40 tasks, main metrics, tags), aggregate_scores.py (its averages)
and writes, with both commits recorded in every file:
  tasks/clip_benchmark/NAME.yaml (+ classes/NAME.tsv, templates/NAME.txt): a task per CLIP_benchmark wds set that
      is not already a task of tasks/ (imagenet, imagenet-v2/-a/-r/-sketch, flickr30k, mscoco)
  tasks/datacomp/NAME.yaml: DataComp's sets that CLIP_benchmark does not host
  tasks/suites/datacomp.yaml, tasks/suites/clip_benchmark_*.yaml: the suites (format: the header of each file)
  tasks/aliases.tsv: the upstream names of these tasks (`vtab/dtd`, `wilds/fmow`, ...), in a generated block
Rerun it after an upstream change; tests/test_suite_tasks.py checks the committed lists against CLIP_benchmark's
installed files.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

import yaml

TASKS = Path(__file__).resolve().parent.parent / "tasks"

# Tasks of tasks/ that already read these CLIP_benchmark sets (their own class lists, checked elsewhere).
EXISTING = {"imagenet1k": "imagenet", "imagenetv2": "imagenet-v2", "imagenet_sketch": "imagenet-sketch",
            "imagenet-a": "imagenet-a", "imagenet-r": "imagenet-r", "flickr30k": "flickr30k",
            "mscoco_captions": "mscoco"}
RETRIEVAL = {"flickr8k", "flickr30k", "mscoco_captions"}
MULTILABEL = {"voc2007_multilabel"}
# The sets whose exported classnames.txt builder.py takes from en_classnames.json (its branches that assign
# `default_classnames[...]` / `classnames[...]`), by the key it uses. Every other set's names come from its source
# dataset (torchvision / tfds label names), which no file of CLIP_benchmark's repository holds: those tasks read
# classnames.txt from the set (`classes: from_data`) and carry no committed copy.
EN_CLASSNAMES_KEY = {
    "fer2013": "fer2013", "mnist": "mnist", "gtsrb": "gtsrb", "country211": "country211",
    "vtab/caltech101": "caltech101_vtab", "vtab/clevr_count_all": "clevr_count_all",
    "vtab/clevr_closest_object_distance": "clevr_closest_object_distance",
    "vtab/diabetic_retinopathy": "diabetic_retinopathy", "vtab/dmlab": "dmlab", "vtab/eurosat": "eurosat",
    "vtab/kitti_closest_vehicle_distance": "kitti_closest_vehicle_distance", "vtab/pets": "pets",
    "vtab/pcam": "pcam", "vtab/svhn": "svhn",
}
IMAGENET_CLASSES = TASKS / "imagenet" / "classes.tsv"  # WordNet ids in label order (imagenet-o's subset)

# DataComp's keys -> our task names, where the name is not the CLIP_benchmark set's.
DATACOMP_TASK = {"retrieval/flickr_1k_test_image_text_retrieval": "flickr30k",
                 "retrieval/mscoco_2014_5k_test_image_text_retrieval": "mscoco", "cifar10": "cifar10"}
# DataComp's main metrics in our metric keys; the score is the mean of the listed keys (retr_eval.py's
# mean_recall@1 is the mean of CLIP_benchmark's text_retrieval_recall@1 = our i2t_R@1 and image_retrieval_recall@1
# = our t2i_R@1). A metric not listed is one we do not compute: its task is refused (REFUSED).
OUR_METRICS = {"acc1": ["top1"], "mean_per_class_recall": ["mean_per_class_recall"],
               "mean_recall@1": ["i2t_R@1", "t2i_R@1"],
               # WILDS' metrics as DataComp's evaluators compute them (eval/group_metrics.py, kind zeroshot_groups)
               "F1-macro_all": ["f1_macro"], "acc_worst_region": ["top1_worst_group"], "acc_wg": ["top1_worst_group"],
               "acc_top5_wg": ["top5_worst_group"]}
# DataComp's sets scored over a field of each image's metadata (the npy member): the field's name and column, the
# order of its evaluator's `_metadata_fields` (eval_utils/wilds_eval.py, fairness_eval.py).
GROUPS = {"wilds/fmow": {"field": "region", "column": 0}, "fairness/geode": {"field": "region", "column": 0},
          "fairness/dollar_street": {"field": "income_ds", "column": 0}}
GROUPED_KIND = {"wilds/iwildcam", *GROUPS}  # the kind that adds macro F1 and worst-group metrics
REFUSED = {
    "misc/winogavil": "WinoGAViL is scored by DataComp's own association game (jaccard_score_10-12 over its "
                      "candidate sets, eval_utils/wino_eval.py); no task kind here reads that data",
}


def git_show(git_dir: Path, commit: str, path: str) -> str:
    return subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def git_commit(git_dir: Path, ref: str) -> str:
    return subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", ref], check=True, capture_output=True,
                          text=True).stdout.strip()


def module_constant(source: str, name: str):
    """The literal assigned to `name` anywhere in `source` (read with ast: the module is never imported)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit(f"{name} not found in the upstream file")


def task_name(cb_name: str) -> str:
    """Our task name of a CLIP_benchmark set: its name without the `vtab/` prefix (aliases keep the long form)."""
    return EXISTING.get(cb_name, cb_name.removeprefix("vtab/"))


def templates_of(templates: dict[str, list[str]], cb_name: str) -> list[str]:
    """builder.py's lookup: the full name, the short name, then imagenet1k's; `{c}` written as our `{}`."""
    for key in (cb_name, cb_name.split("/")[-1], "imagenet1k"):
        if key in templates:
            return [t.replace("{c}", "{}") for t in templates[key]]
    raise SystemExit(f"no templates for {cb_name}")


def dump(path: Path, header: str, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Flow style for the innermost lists and mappings (one line per layout, metric list, tag list); no anchors.
    dumper = type("NoAliases", (yaml.SafeDumper,), {"ignore_aliases": lambda self, data: True})
    body = yaml.dump(data, Dumper=dumper, sort_keys=False, width=118, allow_unicode=True, default_flow_style=None)
    path.write_text("".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + body, encoding="utf-8")


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def datacomp_hub_id(key: str) -> str:
    """Where DataComp's copy of a set is (eval_utils/wds_eval.py: wds_{task with / as -}_test; main.py passes
    fairness/ tasks without their prefix)."""
    return f"djghosh/wds_{key.removeprefix('fairness/').replace('/', '-')}_test"


def cb_task(cb_name: str, classnames: dict, templates: dict, imagenet_o: list[str],
            datacomp_key: str | None) -> tuple[dict, list[str] | None, list[str]]:
    """A CLIP_benchmark set's task, its committed class names (None: from the set only) and its templates."""
    name = task_name(cb_name)
    hub = f"clip-benchmark/wds_{cb_name.replace('/', '-')}"
    kind = ("retrieval" if cb_name in RETRIEVAL else "multilabel" if cb_name in MULTILABEL
            else "zeroshot_classification")
    layout = {"retrieval": "clip_benchmark_wds_retrieval", "multilabel": "clip_benchmark_wds_multilabel"}.get(
        kind, "clip_benchmark_wds")
    names = None
    if cb_name in EN_CLASSNAMES_KEY:
        names = classnames[EN_CLASSNAMES_KEY[cb_name]]
        if not all(n.strip() for n in names):  # a blank name (clevr_closest_object_distance's class 3) has no
            names = None                        # `id<TAB>name` line: the set's own classnames.txt only
    elif cb_name == "imagenet-o":  # builder.py: imagenet1k's names masked by its imagenet_o_wnids
        wanted = set(imagenet_o)
        rows = [line.split("\t") for line in IMAGENET_CLASSES.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
        names = [n for (wnid, _), n in zip(rows, classnames["imagenet1k"], strict=True) if wnid in wanted]
    spec: dict = {"name": name, "kind": kind,
                  "description": f"CLIP_benchmark's wds/{cb_name} ({hub}), as CLIP_benchmark evaluates it."}
    layouts = [{"kind": layout, "split": "test"}]
    if names is not None and kind == "zeroshot_classification":  # the committed names let class folders be read
        layouts.append({"kind": "class_folders", "split": "test", "folder_names": "index"})
    aliases = [f"wds_{cb_name.replace('/', '-')}"] + ([datacomp_hub_id(datacomp_key).split("/")[1]]
                                                      if datacomp_key is not None else [])
    spec["data"] = {"folder": name, "layouts": layouts, "folder_aliases": aliases}
    if kind != "retrieval":
        spec["classes"] = "from_data"
        if names is not None:
            spec["classes_copy"] = f"classes/{name}.tsv"
        spec["templates"] = "from_data"
        spec["templates_copy"] = f"templates/{name}.txt"
    spec["get_data"] = (f"huggingface-cli download --repo-type dataset {hub} --local-dir {name} (or read it from "
                        f"the cache: --data-dir hf-datasets:{hub})")
    if datacomp_key is not None:
        spec["get_data"] += f"; DataComp's copy: {datacomp_hub_id(datacomp_key)}"
    return spec, names, ([] if kind == "retrieval" else templates_of(templates, cb_name))


def datacomp_only_task(key: str, entry: dict) -> dict:
    """A DataComp set that CLIP_benchmark does not host (djghosh/wds_KEY_test, CLIP_benchmark's wds layout)."""
    name = key.split("/")[-1]
    hub = datacomp_hub_id(key)
    spec = {"name": name, "kind": "zeroshot_groups" if key in GROUPED_KIND else "zeroshot_classification",
            "description": f"DataComp's {entry['name']} ({hub}), {entry['num_classes']} classes.",
            "data": {"folder": name, "layouts": [{"kind": "clip_benchmark_wds", "split": "test"}],
                     "folder_aliases": [hub.split("/")[1]]},
            "classes": "from_data", "templates": "from_data",
            "get_data": f"huggingface-cli download --repo-type dataset {hub} --local-dir {name} (or read it from the "
                        f"cache: --data-dir hf-datasets:{hub})"}
    if key in GROUPS:
        spec["groups"] = GROUPS[key]
    if key in REFUSED:
        spec["refused"] = REFUSED[key]
    return spec


SUITE_FORMAT = """\
Suite file format (tasks/suites/*.yaml), read by the suite machinery (reclip_eval/eval/suites.py):
  name: the suite's name (`--task NAME`)
  description: one line
  source: {repo, commit, files}: where the list was read (scripts/make_suite_tasks.py writes this file)
  tasks: in the upstream order, one entry each:
    task: our task name (tasks/**.yaml; null where no task exists)
    key, title: the upstream's key and display name (DataComp: tasklist.yml's key and `name`)
    main_metric: the upstream's name of its main metric (DataComp: acc1 unless tasklist.yml says otherwise)
    metric: our metric keys; the task's score is their mean (null for a refused entry)
    tags: the upstream's tags (DataComp: tasklist.yml's tags)
    refused: null, or one line: why the entry cannot be scored here (the suite reports it, never a number)
  unscored: entries the upstream lists but never scores (DataComp: no main metric), {key, title, why}
  averages: name -> the task names averaged (DataComp: aggregate_scores.py; each a plain mean of the tasks'
    scores; `Average` is over every scored task; an average with a refused task is incomplete)"""


def datacomp_task(key: str, cb_names: set[str]) -> str | None:
    """Our task for a DataComp key: a CLIP_benchmark set's task (by the full key or its last part), a DataComp-only
    task named by the last part, or None (WinoGAViL: no task)."""
    short = key.split("/")[-1]
    if key in DATACOMP_TASK:
        return DATACOMP_TASK[key]
    for name in (key, short):
        if name in cb_names:
            return task_name(name)
    return None if key == "misc/winogavil" else short


def datacomp_suite(tasklist: dict, groups: dict, dc_commit: str, cb_names: set[str]) -> tuple[dict, list[dict]]:
    """The suite file and the specs of the DataComp-only tasks."""
    entries, unscored, only, by_title = [], [], [], {}
    for key, entry in tasklist.items():
        task = datacomp_task(key, cb_names)
        if key.startswith("fairness/") and "main_metric" not in entry:
            # evaluate.py scores metrics.get(main_metric or "acc1"); its FairFace/UTKFace evaluator has no acc1
            unscored.append({"key": key, "title": entry["name"],
                             "why": "DataComp reports no main metric for it (fairness tables only)"})
            continue
        if task is not None and task not in {task_name(n) for n in cb_names} and task not in DATACOMP_TASK.values():
            only.append(datacomp_only_task(key, entry))
        metric_name = entry.get("main_metric", "acc1")
        refused = REFUSED.get(key) or (None if metric_name in OUR_METRICS else f"no metric {metric_name} here")
        entries.append({"task": task, "key": key, "title": entry["name"], "main_metric": metric_name,
                        "metric": None if refused else OUR_METRICS[metric_name], "tags": entry.get("tags", []),
                        "refused": refused})
        by_title[entry["name"]] = entries[-1]
    ref = {title: e["task"] or e["key"] for title, e in by_title.items()}
    averages = {"ImageNet": [ref["ImageNet 1k"]]}
    averages.update({group: sorted(ref[title] for title in titles) for group, titles in groups.items()})
    averages["Average"] = [e["task"] or e["key"] for e in entries]
    suite = {"name": "datacomp",
             "description": f"DataComp's evaluation suite: its {len(entries)} scored tasks and its averages.",
             "source": {"repo": "mlfoundations/datacomp", "commit": dc_commit,
                        "files": ["tasklist.yml", "aggregate_scores.py"]},
             "tasks": entries, "unscored": unscored, "averages": averages}
    return suite, only


ALIAS_BEGIN = "# --- generated by scripts/make_suite_tasks.py: CLIP_benchmark's and DataComp's names ---"
ALIAS_END = "# --- end of the generated aliases ---"


def alias_rows(wds_sets: list[str], suite: dict) -> list[tuple[str, str, str]]:
    """(alias, task, suite) for every upstream name that is not our task's name; a name both use is one row."""
    users: dict[tuple[str, str], list[str]] = {}
    for cb_name in wds_sets:
        users.setdefault((cb_name, task_name(cb_name)), []).append("CLIP_benchmark")
    for entry in suite["tasks"]:
        if entry["task"] is not None:
            users.setdefault((entry["key"], entry["task"]), []).append("DataComp")
    return [(alias, task, "+".join(who)) for (alias, task), who in users.items() if alias != task]


def write_aliases(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """Replace the generated block of tasks/aliases.tsv (appended at its end the first time); hand-written rows
    that already name an alias are kept and the generated row dropped."""
    text = path.read_text(encoding="utf-8")
    if ALIAS_BEGIN in text:
        head, rest = text.split(ALIAS_BEGIN + "\n", 1)
        text = head + rest.split(ALIAS_END + "\n", 1)[1]
    taken = {line.split("\t")[0] for line in text.splitlines() if line and not line.startswith("#")}
    block = [ALIAS_BEGIN, *("\t".join(row) for row in rows if row[0] not in taken), ALIAS_END]
    path.write_text(text.rstrip("\n") + "\n" + "\n".join(block) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip-benchmark-git", type=Path, required=True)
    parser.add_argument("--clip-benchmark-commit", default="HEAD")
    parser.add_argument("--datacomp-git", type=Path, required=True)
    parser.add_argument("--datacomp-commit", default="HEAD")
    parser.add_argument("--out", type=Path, default=TASKS, help="the tasks folder (default: the checkout's)")
    args = parser.parse_args(argv)
    cb, dc = args.clip_benchmark_git, args.datacomp_git
    cb_commit, dc_commit = git_commit(cb, args.clip_benchmark_commit), git_commit(dc, args.datacomp_commit)
    classnames = json.loads(git_show(cb, cb_commit, "clip_benchmark/datasets/en_classnames.json"))
    templates = json.loads(git_show(cb, cb_commit, "clip_benchmark/datasets/en_zeroshot_classification_templates.json"))
    builder = git_show(cb, cb_commit, "clip_benchmark/datasets/builder.py")
    wds_sets = [line.strip().removeprefix("wds/") for line in
                git_show(cb, cb_commit, "benchmark/webdatasets.txt").splitlines() if line.strip()]
    tasklist = yaml.safe_load(git_show(dc, dc_commit, "tasklist.yml"))
    groups = module_constant(git_show(dc, dc_commit, "aggregate_scores.py"), "DATASET_GROUPS")
    cb_header = (f"Generated by scripts/make_suite_tasks.py from CLIP_benchmark {cb_commit} (benchmark/webdatasets.txt,\n"
                 f"clip_benchmark/datasets/en_classnames.json, en_zeroshot_classification_templates.json); do not edit.\n"
                 "classes/templates: from_data: the set's classnames.txt / zeroshot_classification_templates.txt;\n"
                 "classes_copy / templates_copy: CLIP_benchmark's own lists, for layouts that carry none.")
    imagenet_o = module_constant(builder, "imagenet_o_wnids")
    cb_by_task = {task_name(name): name for name in wds_sets}
    datacomp_keys = {cb_by_task[task]: key for key in tasklist if (task := datacomp_task(key, set(wds_sets))) in cb_by_task}
    for cb_name in wds_sets:
        if cb_name in EXISTING:
            continue
        spec, names, prompts = cb_task(cb_name, classnames, templates, imagenet_o, datacomp_keys.get(cb_name))
        folder = args.out / "clip_benchmark"
        dump(folder / f"{spec['name']}.yaml", cb_header, spec)
        if names is not None:
            write_lines(folder / spec["classes_copy"], [f"{i}\t{n}" for i, n in enumerate(names)])
        if prompts:
            write_lines(folder / spec["templates_copy"], prompts)
    cb_set = set(wds_sets)
    suite, only = datacomp_suite(tasklist, groups, dc_commit, cb_set)
    dc_header = (f"Generated by scripts/make_suite_tasks.py from DataComp {dc_commit} (tasklist.yml); do not edit.\n"
                 "A DataComp set CLIP_benchmark does not host: classes and prompts are the set's own files.")
    for spec in only:
        dump(args.out / "datacomp" / f"{spec['name']}.yaml", dc_header, spec)
    dump(args.out / "suites" / "datacomp.yaml", SUITE_FORMAT + "\n\nGenerated by scripts/make_suite_tasks.py; "
         "do not edit.", suite)
    write_aliases(args.out / "aliases.tsv", alias_rows(wds_sets, suite))
    collections = module_constant(builder, "dataset_collection")
    for collection, members in collections.items():
        usable = [m for m in members if m.removeprefix("wds/") in cb_set]
        if len(usable) != len(members):
            continue  # a collection with sets CLIP_benchmark does not host as webdatasets (sugar_crepe, ...)
        entries = [{"task": task_name(m), "key": m, "title": m, "main_metric": None,
                    "metric": None, "tags": [], "refused": None} for m in usable]
        dump(args.out / "suites" / f"clip_benchmark_{collection.replace('+', '_plus')}.yaml",
             SUITE_FORMAT + "\n\nGenerated by scripts/make_suite_tasks.py; do not edit. CLIP_benchmark reports every "
             "metric of each task: no main metric, no averages.",
             {"name": f"clip_benchmark_{collection.replace('+', '_plus')}",
              "description": f"CLIP_benchmark's `{collection}` collection (clip_benchmark eval --dataset {collection}).",
              "source": {"repo": "LAION-AI/CLIP_benchmark", "commit": cb_commit,
                         "files": ["clip_benchmark/datasets/builder.py"]},
              "tasks": entries, "unscored": [], "averages": {}})
    print(f"wrote tasks for {len(wds_sets)} CLIP_benchmark sets and {len(suite['tasks'])} DataComp tasks "
          f"under {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
