"""Open-vocabulary detection: the LVIS evaluator (and, later, the RO-ViT-style detector)."""
