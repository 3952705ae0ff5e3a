"""The ImageNet class lists and prompt templates under tasks/ equal what the peers ship (timm, open_clip)."""

from pathlib import Path

import open_clip.zero_shot_metadata as openclip_meta
import timm.data

from reclip_eval.classifier.templates import read_templates
from reclip_eval.data.imagefolder import read_class_list
from reclip_eval.paths import data_folder

TIMM_INFO = Path(timm.data.__file__).parent / "_info"
IMAGENET = data_folder("tasks") / "imagenet"


def test_1000_classes_in_label_order_with_clip_names():
    classes = read_class_list(IMAGENET / "classes.tsv")
    assert list(classes.ids) == (TIMM_INFO / "imagenet_synsets.txt").read_text().split()
    assert list(classes.names) == list(openclip_meta.IMAGENET_CLASSNAMES)


def test_the_80_clip_templates():
    templates = read_templates(IMAGENET / "templates.txt")
    assert templates == [t("{}") for t in openclip_meta.OPENAI_IMAGENET_TEMPLATES]
    assert len(templates) == 80


def test_a_and_r_subsets_are_in_1000_class_order():
    full = read_class_list(IMAGENET / "classes.tsv")
    for subset in ("a", "r"):
        classes = read_class_list(IMAGENET / f"imagenet-{subset}_classes.tsv")
        indices = [int(i) for i in (TIMM_INFO / f"imagenet_{subset}_indices.txt").read_text().split()]
        assert len(classes.ids) == 200
        assert [full.ids.index(w) for w in classes.ids] == sorted(indices)
        assert all(full.names[full.ids.index(w)] == n for w, n in zip(classes.ids, classes.names, strict=True))
