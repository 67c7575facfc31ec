"""cosma: combined operator scheduling, scratchpad allocation and tensor replacement
for DNN accelerators. The IR lives in ``cosma.core.ir``; plans are checked by
``cosma.core.validator`` and scored by ``cosma.core.cost``."""

__version__ = "0.1.0"
