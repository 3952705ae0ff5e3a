"""`<split>/*.JPEG` + `LOC_val_solution.csv`: ImageNet val as Kaggle's download has it."""

from __future__ import annotations

from reclip_eval.data.layouts.base import register_layout
from reclip_eval.data.layouts.flat_folder import FlatFolderLayout


@register_layout
class FlatLocCsv(FlatFolderLayout):
    name = "flat_loc_csv"
    summary = "<split>/*.JPEG + LOC_val_solution.csv (labels: the CSV's name)"

    def label_source(self, spec, folder):
        return folder / spec.labels

    def is_present(self, spec, folder, num_classes, class_ids):
        return (folder / spec.split).is_dir() and (folder / spec.labels).is_file()

    def read_labels(self, source, split):
        from reclip_eval.data.imagenet_flat import read_loc_val_solution

        return read_loc_val_solution(source)

    def expected(self, spec, folder):
        return f"{folder}/{spec.split}/<image>.JPEG  with labels in  {folder}/{spec.labels}"
