"""The face: the ``cosma`` command (``main``) and the memory-map drawing (``show``)."""

from cosma.cli.main import main

__all__ = ["main"]
