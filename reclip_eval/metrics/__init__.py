"""Metrics that score a model's outputs against a data set's annotations and need nothing else: no model, no task
runner. The LVIS evaluator (lvis.py, its input checks in lvis_inputs.py) is one: the detector (detect/predict.py,
`reclip-eval detect evaluate`) and detection tasks (eval/detection.py) both score with it, so it sits below both."""
