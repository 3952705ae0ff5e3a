"""`lvis_v1_val.json` + the COCO 2017 image folders, found through each image's `coco_url`. Read by the detection
task (reclip_eval/detect/data.py reads the file; reclip_eval/metrics/lvis_inputs.py checks it)."""

from __future__ import annotations

from reclip_eval.data.layouts.base import DetectionLayout, register_layout


@register_layout
class LvisJson(DetectionLayout):
    name = "lvis_json"
    summary = "lvis_v1_val.json (annotations) + COCO 2017 train2017/ and val2017/ under images"

    def expected(self, spec, folder):
        images = folder / spec.images
        return (f"{folder}/{spec.annotations}  with COCO 2017 images in  {images}/train2017/  and  {images}/val2017/"
                "  (each image's coco_url names its folder)")
