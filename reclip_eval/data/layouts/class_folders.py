"""`<split>/<class id>/*.jpg`: ImageNet val sorted into wnid folders, -Sketch, -A, -R (ids), -V2 (indices)."""

from __future__ import annotations

from reclip_eval.data.imagefolder import scan_image_folder
from reclip_eval.data.layouts.base import ClassificationData, ClassificationLayout, register_layout


@register_layout
class ClassFolders(ClassificationLayout):
    name = "class_folders"
    summary = "<split>/<class id>/*.jpg (folder_names: id) or <split>/<class index>/*.jpg (folder_names: index)"

    def is_present(self, spec, folder, num_classes, class_ids):
        # At least one sub-folder must be named like a class of the task, so that a data root full of other tasks'
        # folders is not mistaken for one.
        split = folder / spec.split
        if not split.is_dir():
            return False
        names = set(class_ids) if spec.folder_names == "id" else {str(i) for i in range(num_classes or 0)}
        return any(p.is_dir() and (not names or p.name in names) for p in split.iterdir())

    def partial_match(self, spec, folder):
        split = folder / spec.split
        if split.is_dir() and folder.name != split.name:
            return f"{split} exists but none of its sub-folders is named after a class of this task"
        return None

    def expected(self, spec, folder):
        names = "<class id>" if spec.folder_names == "id" else "<class index 0..N-1>"
        return f"{folder}/{spec.split}/{names}/<image>.jpg"

    def read(self, spec, folder, classes):
        return ClassificationData.from_scan(scan_image_folder(folder / spec.split, classes, spec.folder_names))
