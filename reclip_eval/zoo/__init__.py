"""Named models (zoo/*.yaml entries), model loading by spec string, and the adapters evaluation runs on.

`ModelAdapter` and `load_adapter` are loaded on first use, so that reading a zoo entry imports no torch."""

__all__ = ["ModelAdapter", "load_adapter"]


def __getattr__(name: str):
    if name == "ModelAdapter":
        from reclip_eval.zoo.adapter import ModelAdapter

        return ModelAdapter
    if name == "load_adapter":
        from reclip_eval.zoo.resolve import load_adapter

        return load_adapter
    raise AttributeError(f"module 'reclip_eval.zoo' has no attribute {name!r}")
