"""`coco_test_karpathy.json` (COCO captions form, CLIP_benchmark's) + `val2014/`."""

from __future__ import annotations

from reclip_eval.data.layouts.base import RetrievalLayout, register_layout
from reclip_eval.data.retrieval_files import read_coco_captions


@register_layout
class CocoCaptions(RetrievalLayout):
    name = "coco_captions"
    summary = "coco_test_karpathy.json (COCO captions form, CLIP_benchmark; annotations) + val2014/"

    def read(self, spec, folder):
        return read_coco_captions(folder / spec.annotations, folder / spec.images)
