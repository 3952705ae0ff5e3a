"""Open-vocabulary detection: the RO-ViT-style detector (torchvision Mask R-CNN on a CLIP ViT backbone: backbone.py,
heads.py, model.py; vocabulary.py, data.py, train.py, predict.py, checkpoint.py, adapter.py) and the LVIS evaluator
(lvis_eval.py)."""
