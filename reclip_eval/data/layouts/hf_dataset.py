"""A `datasets.save_to_disk` folder, or a Hub dataset id given as `--data-dir hf-datasets:ID`."""

from __future__ import annotations

from reclip_eval.data.layouts.base import ClassificationData, ClassificationLayout, register_layout

HF_DATASETS_PREFIX = "hf-datasets:"


@register_layout
class HFDataset(ClassificationLayout):
    name = "hf_dataset"
    summary = f"a datasets.save_to_disk folder (dataset: its name), or --data-dir {HF_DATASETS_PREFIX}<hub id>"
    reads_hub_ids = True

    def is_present(self, spec, folder, num_classes, class_ids):
        return (folder / spec.dataset).is_dir()

    def expected(self, spec, folder):
        return (f"{folder}/{spec.dataset}/  (datasets.save_to_disk, split {spec.split!r}, columns "
                f"{spec.image_column!r}/{spec.label_column!r}); or --data-dir {HF_DATASETS_PREFIX}<hub id>")

    def read(self, spec, folder, classes):
        from reclip_eval.data.hf_dataset import HFImageLoader, hf_items, load_hf_split

        source = folder if isinstance(folder, str) else str(folder / spec.dataset)
        dataset = load_hf_split(source, spec.split)
        items = hf_items(dataset, spec.image_column, spec.label_column, len(classes.ids), source)
        seen = {label for _, label in items}
        return ClassificationData(items, [c for i, c in enumerate(classes.ids) if i not in seen],
                                  load=HFImageLoader(dataset, spec.image_column),
                                  describe_source=lambda row: f"{source}[{row}]")
