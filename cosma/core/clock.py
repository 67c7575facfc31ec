"""One wall-clock budget, shared by the phases of a solve: each phase asks what is left."""

from __future__ import annotations

import time


class Clock:
    """A time limit in seconds from construction (None: no limit)."""

    def __init__(self, time_limit: float | None):
        self.start = time.perf_counter()
        self.deadline = None if time_limit is None else self.start + time_limit

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float | None:
        """Seconds left (negative once past the deadline), None without a limit."""
        return None if self.deadline is None else self.deadline - time.perf_counter()

    def expired(self, margin: float = 0.0) -> bool:
        """Past the deadline, or within ``margin`` seconds of it."""
        left = self.left()
        return left is not None and left <= margin


__all__ = ["Clock"]
