"""`<split>/*.JPEG` + `ILSVRC2012_devkit_t12/`: ImageNet val with the official devkit's labels."""

from __future__ import annotations

from reclip_eval.data.images import is_image_file
from reclip_eval.data.layouts.base import register_layout
from reclip_eval.data.layouts.flat_folder import FlatFolderLayout


@register_layout
class FlatDevkit(FlatFolderLayout):
    name = "flat_devkit"
    summary = "<split>/*.JPEG + ILSVRC2012_devkit_t12/ (devkit: the folder's name)"

    def label_source(self, spec, folder):
        return folder / spec.devkit

    def is_present(self, spec, folder, num_classes, class_ids):
        return (folder / spec.split).is_dir() and (folder / spec.devkit).is_dir()

    def read_labels(self, source, split):
        from reclip_eval.data.imagenet_flat import read_devkit

        return read_devkit(source, [p.stem for p in split.iterdir() if p.is_file() and is_image_file(p)])

    def expected(self, spec, folder):
        return f"{folder}/{spec.split}/<image>.JPEG  with labels in  {folder}/{spec.devkit}/data/"
