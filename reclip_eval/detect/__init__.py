"""Open-vocabulary detection: the RO-ViT-style detector (torchvision Mask R-CNN on a CLIP ViT backbone: backbone.py,
heads.py, model.py; vocabulary.py, data.py, train.py, predict.py, checkpoint.py, adapter.py). It is scored by the
LVIS evaluator in reclip_eval/metrics/lvis.py."""

# Imported here so that any use of the package registers the detector model kind (the zoo's resolver cannot import it).
from reclip_eval.detect.adapter import DetectorAdapter

__all__ = ["DetectorAdapter"]
