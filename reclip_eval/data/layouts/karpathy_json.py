"""`dataset_flickr30k.json` / `dataset_coco.json` (Karpathy's splits) + the images they name."""

from __future__ import annotations

from reclip_eval.data.layouts.base import RetrievalLayout, register_layout
from reclip_eval.data.retrieval_files import read_karpathy_json


@register_layout
class KarpathyJson(RetrievalLayout):
    name = "karpathy_json"
    summary = "dataset_flickr30k.json / dataset_coco.json (annotations) + the images they name (split: which)"

    def read(self, spec, folder):
        return read_karpathy_json(folder / spec.annotations, folder / spec.images, split=spec.split)
