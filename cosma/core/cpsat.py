"""CP-SAT plumbing shared by every model in the project: a solve that Ctrl-C stops cleanly."""

from __future__ import annotations

import contextlib
import signal
import threading

from ortools.sat.python import cp_model


def solve_interruptibly(solver: cp_model.CpSolver, model: cp_model.CpModel, callback=None) -> int:
    """``solver.solve`` that Ctrl-C stops cleanly: CP-SAT keeps its best solution and the
    KeyboardInterrupt reaches the caller, who returns its best plan.

    CP-SAT's own SIGINT handling (``catch_sigint_signal``) is switched off: OR-Tools
    leaves its handler installed after the solve, and a later Ctrl-C then kills the
    process with status 130. Instead the solve runs in a worker thread while the main
    thread, which is where Python delivers KeyboardInterrupt, waits; on Ctrl-C it asks
    the solver to stop, waits for it, and re-raises.
    """
    solver.parameters.catch_sigint_signal = False
    box: dict[str, int] = {}
    worker = threading.Thread(target=lambda: box.setdefault("status", solver.solve(model, callback)), daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.05)
    except KeyboardInterrupt:
        solver.stop_search()
        worker.join()
        raise
    return box["status"]


@contextlib.contextmanager
def keep_sigint_handler():
    """Restore Python's Ctrl-C handler after code that may run CP-SAT with its default
    ``catch_sigint_signal`` (OR-Tools leaves a handler behind that exits with 130)."""
    main = threading.current_thread() is threading.main_thread()
    saved = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        if main and saved is not None:
            signal.signal(signal.SIGINT, saved)


__all__ = ["solve_interruptibly", "keep_sigint_handler"]
