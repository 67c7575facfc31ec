"""Where the project's data lives by default: folders of a checkout, relative to the
working directory (run the commands from the repository root, or pass the paths).

Installed code bakes in no location of its own source tree: a wheel has no ``models/``
or ``results/`` beside it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from cosma.core.errors import UsageError

ZOO_DIR = Path("models/zoo")  # the human-designed networks, weight-stripped ONNX
NAS_DIR = Path("models/nas")  # NAS and RandWire networks
RESULTS_DIR = Path("results")  # tables and plots written by the benchmark commands
AGENT_CHECKPOINT = RESULTS_DIR / "muzero" / "checkpoint.pt"  # the shipped mallocMuZero agent
ANCHORS_DIR = Path("../shared/anchors")  # MiniMalloc's benchmark, beside the checkout


def check_writable(path: str | os.PathLike[str], what: str = "") -> Path:
    """Fail now, not after a long solve, if a file cannot be written at ``path``: its folder
    must exist and take a new file (tried for real: permission bits do not stop root, and
    /proc refuses files whatever they say), and ``path`` must not be a folder.
    ``UsageError`` naming ``what`` (the option, e.g. ``-o``) and the reason."""
    target = Path(path)
    label = f"{what} {os.fspath(path)}" if what else os.fspath(path)
    if target.is_dir():
        raise UsageError(f"{label}: is a directory, not a file")
    parent = target.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"{label}: no such directory {parent}")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise UsageError(f"{label}: cannot write in {parent} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"{label}: the file exists and is read-only")
    return target


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path`` (same suffix, so writers that
    pick a format from it still do), then rename it to ``path``: a failure leaves nothing
    half-written. An ``OSError`` becomes a ``UsageError`` naming the path."""
    target = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.resolve().parent)
    except OSError as e:
        raise UsageError(f"{os.fspath(path)}: cannot write ({e.strerror or e})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a written file is for reading
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"{os.fspath(path)}: cannot write ({e.strerror or e})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | os.PathLike[str], text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


__all__ = [
    "write_text_atomically",
    "ZOO_DIR",
    "NAS_DIR",
    "RESULTS_DIR",
    "AGENT_CHECKPOINT",
    "ANCHORS_DIR",
    "check_writable",
    "write_atomically",
]
