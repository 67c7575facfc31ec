"""cosma: combined operator scheduling, scratchpad allocation and tensor replacement
for DNN accelerators. The IR lives in ``cosma.core.ir``; plans are checked by
``cosma.core.validator`` and scored by ``cosma.core.cost``.

The Python API (``cosma.api``) is re-exported here and loaded on first use, so that
``import cosma`` (and ``import cosma.core``) imports nothing else::

    result = cosma.optimize("model.onnx", scratchpad="512KiB")
    result.save("plan.json")

``__all__`` lists it: ``optimize``, ``validate``, ``bounds``, ``load`` and the ``Result``
they return (see ``cosma.api`` for every name and argument).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Names served lazily from cosma.api (module __getattr__, PEP 562).
_API = (
    "optimize",
    "validate",
    "bounds",
    "load",
    "Result",
    "Bounds",
    "Status",
    "CosmaError",
    "ModelError",
    "CapacityError",
    "UsageError",
)

__all__ = ["__version__", *_API]

if TYPE_CHECKING:  # for type checkers and IDEs only; nothing is imported at run time
    from cosma.api import (  # noqa: F401
        Bounds,
        CapacityError,
        CosmaError,
        ModelError,
        Result,
        Status,
        UsageError,
        bounds,
        load,
        optimize,
        validate,
    )


def __getattr__(name: str) -> Any:
    if name in _API:
        from cosma import api

        value = getattr(api, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'cosma' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
