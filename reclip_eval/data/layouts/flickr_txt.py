"""`flickr30k_test_karpathy.txt` (CLIP_benchmark's form) + `flickr30k-images/`."""

from __future__ import annotations

from reclip_eval.data.layouts.base import RetrievalLayout, register_layout
from reclip_eval.data.retrieval_files import read_flickr_txt


@register_layout
class FlickrTxt(RetrievalLayout):
    name = "flickr_txt"
    summary = "flickr30k_test_karpathy.txt (CLIP_benchmark; annotations) + flickr30k-images/"

    def read(self, spec, folder):
        return read_flickr_txt(folder / spec.annotations, folder / spec.images)
