"""cosma: combined operator scheduling, scratchpad allocation and tensor replacement
for DNN accelerators. The IR lives in ``cosma.ir``; plans are checked by
``cosma.validator`` and scored by ``cosma.cost``."""

__version__ = "0.1.0"
