"""anatomix: synthetic, fully labelled 3D volumes with correct anatomy for segmentation pre-training.

The notebook API (imported on first use, so ``import anatomix`` stays light)::

    from anatomix import ShapeBank, OrganGraph, Synthesizer
    sample = Synthesizer("abdomen").sample(0)   # sample.image, sample.label, sample.record
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "ShapeBank", "OrganGraph", "Synthesizer"]

_LAZY = {"ShapeBank": "anatomix.bank", "OrganGraph": "anatomix.graph", "Synthesizer": "anatomix.api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'anatomix' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
