"""Text-side class embeddings, shared by zero-shot classification (reclip_eval/eval/zeroshot.py) and the detector's
vocabulary (reclip_eval/detect/vocabulary.py): the prompt-template reader (templates.py), prompt ensembling
(ensemble.py) and the on-disk class-embedding cache (cache.py). It sits below both users, so neither imports the
other; it knows no model family, only a text encoder passed in."""
