"""Task kinds and data layouts are registries: a kind or layout defined in this test module (no other file touched)
is validated, listed by `reclip-eval tasks`, located, read and run; unknown names get the near-match error."""

import pytest
from PIL import Image

from reclip_eval.cli.main import main
from reclip_eval.data.imagefolder import read_class_list
from reclip_eval.data.layouts import LAYOUTS, ClassificationData, read_classification
from reclip_eval.data.layouts.base import ClassificationLayout, register_layout
from reclip_eval.errors import ConfigError, DataError
from reclip_eval.eval.outcome import TaskOutcome
from reclip_eval.eval.runner import EvalOptions, evaluate
from reclip_eval.eval.task_kinds import TASK_KINDS, Headline, TaskKind, hf_task_type, register_task_kind, requires
from reclip_eval.eval.tasks import load_task, synthetic_twins
from reclip_eval.leaderboard.measured import MeasuredRow
from reclip_eval.leaderboard.render import render_models
from reclip_eval.zoo.resolve import load_adapter


@pytest.fixture()
def registries(monkeypatch):
    """What a test registers is gone after it: each registry gets a copy of its entries for the test."""
    monkeypatch.setattr(LAYOUTS, "_items", dict(LAYOUTS._items))
    monkeypatch.setattr(TASK_KINDS, "_items", dict(TASK_KINDS._items))


def _register_toy_layout():
    """`labels.tsv` (`file<TAB>class id`) beside the images: a layout no task of the project uses."""

    @register_layout
    class ToyTsv(ClassificationLayout):
        name = "toy_tsv"
        summary = "labels.tsv (file<TAB>class id) + the images it names"

        def is_present(self, spec, folder, num_classes, class_ids):
            return (folder / "labels.tsv").is_file()

        def expected(self, spec, folder):
            return f"{folder}/labels.tsv  naming images beside it"

        def problems(self, spec):
            return [] if spec.split == "all" else [f"split: toy_tsv reads split 'all', got {spec.split!r}"]

        def read(self, spec, folder, classes):
            rows = [line.split("\t") for line in (folder / "labels.tsv").read_text().splitlines()]
            return ClassificationData([(folder / f, classes.ids.index(c)) for f, c in rows], [])


def _toy_images(folder):
    folder.mkdir(parents=True)
    rows = []
    for i, (colour, cid) in enumerate([("red", "n01"), ("blue", "n02"), ("red", "n01")]):
        Image.new("RGB", (40, 40), colour).save(folder / f"{i}.png")
        rows.append(f"{i}.png\t{cid}")
    (folder / "labels.tsv").write_text("\n".join(rows))


def _task_yaml(tmp_path, kind="zeroshot_classification", layout="{kind: toy_tsv, split: all}", extra=""):
    (tmp_path / "classes.tsv").write_text("n01\tred thing\nn02\tblue thing\n")
    (tmp_path / "t.txt").write_text("a photo of a {}.\n")
    path = tmp_path / "toy.yaml"
    path.write_text(f"name: toy\nkind: {kind}\ndescription: d\ndata: {{folder: toy, layouts: [{layout}]}}\n"
                    f"classes: {tmp_path / 'classes.tsv'}\ntemplates: {tmp_path / 't.txt'}\nget_data: make it\n"
                    + extra)
    return path


def _problems(path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_task(str(path))
    assert e.value.source == str(path)
    return e.value.problems


def test_a_layout_registered_in_a_test_module_is_validated_listed_found_and_read(registries, tiny_checkpoint,
                                                                                 tmp_path, capsys):
    _register_toy_layout()
    assert main(["tasks"]) == 0
    assert "| toy_tsv " in capsys.readouterr().out
    assert "split: toy_tsv reads split 'all'" in _problems(_task_yaml(tmp_path, layout="{kind: toy_tsv}"))[0]
    spec = load_task(str(_task_yaml(tmp_path)))
    _toy_images(tmp_path / "data" / "toy")
    data = read_classification(spec.data.layouts[0], tmp_path / "data" / "toy", read_class_list(tmp_path / "classes.tsv"))
    assert [label for _, label in data.items] == [0, 1, 0]
    results = evaluate(load_adapter(str(tiny_checkpoint)), spec, EvalOptions(data_dir=tmp_path / "data", workers=0))
    assert results["task"]["layout"] == "toy_tsv" and results["counts"]["images_evaluated"] == 3
    with pytest.raises(DataError, match="data not found.*\n.*\n    .*labels.tsv  naming images beside it"):
        evaluate(load_adapter(str(tiny_checkpoint)), spec, EvalOptions(data_dir=tmp_path / "empty", workers=0))


def _count_images(adapter, spec, data_root, layout, **options):
    data = read_classification(layout, data_root, read_class_list(spec.resource(spec.classes)))
    return TaskOutcome(metrics={"images": len(data.items) / 100}, counts={"images_evaluated": len(data.items),
                                                                          "images_skipped": 0})


def test_a_task_kind_registered_in_a_test_module_is_validated_listed_run_and_shown(registries, tiny_checkpoint,
                                                                                   tmp_path, capsys):
    _register_toy_layout()
    register_task_kind(TaskKind(
        name="image_count", run=_count_images, reads="classification", summary="counts the images",
        validate=requires("classes", "templates"), headline=Headline(("images",), "images / 100", "counts", 99),
        hf_task_type="image-counting"))
    assert main(["tasks"]) == 0
    assert "| image_count " in capsys.readouterr().out
    lacking = _task_yaml(tmp_path, kind="image_count")
    lacking.write_text(lacking.read_text().replace(f"templates: {tmp_path / 't.txt'}\n", ""))
    assert _problems(lacking) == ["classes and templates: required for image_count"]
    assert "cannot feed a image_count task" in _problems(
        _task_yaml(tmp_path, kind="image_count", layout="{kind: karpathy_json, annotations: a.json}"))[0]
    spec = load_task(str(_task_yaml(tmp_path, kind="image_count")))
    _toy_images(tmp_path / "toy")
    results = evaluate(load_adapter(str(tiny_checkpoint)), spec, EvalOptions(data_dir=tmp_path, workers=0))
    assert results["task"]["kind"] == "image_count" and results["metrics"] == {"images": 0.03}
    assert hf_task_type("image_count") == "image-counting"
    models = render_models([MeasuredRow("m", 32, None, None, "0", results={"toy": results})])
    assert "| 3.00 " in models and ", images / 100 for counts; GMACs" in models


@pytest.mark.parametrize(("yaml_edit", "problem"), [
    (("kind: zeroshot_classification", "kind: zeroshot_clasification"),
     "kind: unknown task kind 'zeroshot_clasification'. Did you mean: zeroshot_classification"),
    (("{kind: class_folders, split: val}", "{kind: class_folder, split: val}"),
     "data.layouts[0].kind: unknown data layout 'class_folder'. Did you mean: class_folders?"),
    (("synth_set: zeroshot\n", "synth_set: zeroshott\n"),
     "synth_set: unknown synthetic set 'zeroshott'. Did you mean: zeroshot"),
    (("twin_of: imagenet ", "twin_of: imagenett "), "twin_of: unknown task 'imagenett'. Did you mean: imagenet"),
])
def test_unknown_names_get_one_near_match_line_naming_the_file_and_key(yaml_edit, problem, tmp_path):
    from reclip_eval.paths import data_folder

    text = (data_folder("tasks") / "shapes-zeroshot.yaml").read_text()
    assert yaml_edit[0] in text
    path = tmp_path / "shapes-zeroshot.yaml"
    path.write_text(text.replace("shapes/", str(data_folder("tasks") / "shapes") + "/").replace(*yaml_edit))
    problems = _problems(path)
    assert len(problems) == 1 and problems[0].startswith(problem) and "\n" not in problems[0]
    assert f"invalid config {path}:" in str(
        pytest.raises(ConfigError, load_task, str(path)).value).splitlines()[0]


def test_the_synthetic_twins_are_the_task_yamls_twin_of(tmp_path):
    assert synthetic_twins() == {"imagenet": "shapes-zeroshot", "imagenet-v2": "shapes-v2",
                                 "imagenet-sketch": "shapes-sketch", "imagenet-r": "shapes-r", "imagenet-a": "shapes-a",
                                 "flickr30k": "shapes-retrieval", "lvis": "shapes-lvis"}
    twin = load_task("shapes-v2")
    with pytest.raises(ConfigError, match="twin_of: 'imagenet-v2' already has the twin 'shapes-v2'"):
        synthetic_twins([twin, load_task("shapes-v2")])


def test_a_kind_must_read_data_some_layout_holds_and_names_are_unique(registries):
    kind = TASK_KINDS.get("retrieval")
    with pytest.raises(ValueError, match="reads 'audio' data, which no layout holds"):
        register_task_kind(TaskKind(name="audio", run=kind.run, reads="audio", summary="", headline=kind.headline))
    with pytest.raises(ValueError, match="task kind 'retrieval' is registered twice"):
        register_task_kind(kind)
    assert hf_task_type("linear_probe") == "linear_probe"  # a kind without a Hub task type: its own name
