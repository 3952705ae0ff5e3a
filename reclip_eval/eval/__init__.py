"""Evaluation: task specs (tasks/*.yaml), task kinds, pure metric functions, feature extraction, the results JSON.

Each runner module registers its task kind at its bottom (task_kinds.py); importing them here means anything
imported from this package sees every built-in kind, and a new kind is its module plus one name below."""

from reclip_eval.eval import detection, linear_probe, multilabel, retrieval, zeroshot, zeroshot_groups  # noqa: F401
