"""reclip-eval: RECLIP (resource-efficient CLIP) training, zero-shot evaluation suite and model hub.

The Python API (reclip_eval/api.py) is here, loaded on first use so that `import reclip_eval` imports no torch:

    model = reclip_eval.load("reclip-demo")
    results = reclip_eval.evaluate(model, "shapes-zeroshot")
"""

__version__ = "0.1.0"

_API = ("load", "evaluate", "list_models", "list_tasks")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from reclip_eval import api

        return getattr(api, name)
    raise AttributeError(f"module 'reclip_eval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
