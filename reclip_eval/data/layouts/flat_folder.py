"""What the two flat ImageNet layouts share: `<split>/*.JPEG` in one folder, labelled by a file beside it (which
file is the layout's own: `label_source`). Not a layout itself."""

from __future__ import annotations

from pathlib import Path

from reclip_eval.data.images import is_image_file
from reclip_eval.data.layouts.base import ClassificationData, ClassificationLayout, LayoutSpec


class FlatFolderLayout(ClassificationLayout):
    def label_source(self, spec: LayoutSpec, folder: Path) -> Path:
        """The file or folder that holds the labels of the flat images."""
        raise NotImplementedError

    def read_labels(self, source: Path, split: Path) -> dict[str, str]:
        """image id (file stem) -> class id."""
        raise NotImplementedError

    def partial_match(self, spec, folder):
        split = folder / spec.split
        if split.is_dir():
            images = sum(1 for p in split.iterdir() if p.is_file() and is_image_file(p))
            needed = self.label_source(spec, folder)
            if images and not needed.exists():
                return f"{split} holds {images} images in one flat folder, but their labels ({needed}) are missing"
        return None

    def read(self, spec, folder, classes):
        from reclip_eval.data.imagenet_flat import scan_flat_folder

        split, source = folder / spec.split, self.label_source(spec, folder)
        return ClassificationData.from_scan(scan_flat_folder(split, self.read_labels(source, split), classes, source))
