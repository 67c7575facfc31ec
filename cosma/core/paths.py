"""Where the project's data lives by default: folders of a checkout, relative to the
working directory (run the commands from the repository root, or pass the paths).

Installed code bakes in no location of its own source tree: a wheel has no ``models/``
or ``results/`` beside it."""

from __future__ import annotations

from pathlib import Path

ZOO_DIR = Path("models/zoo")  # the human-designed networks, weight-stripped ONNX
NAS_DIR = Path("models/nas")  # NAS and RandWire networks
RESULTS_DIR = Path("results")  # tables and plots written by the benchmark commands
AGENT_CHECKPOINT = RESULTS_DIR / "muzero" / "checkpoint.pt"  # the shipped mallocMuZero agent
ANCHORS_DIR = Path("../shared/anchors")  # MiniMalloc's benchmark, beside the checkout

__all__ = ["ZOO_DIR", "NAS_DIR", "RESULTS_DIR", "AGENT_CHECKPOINT", "ANCHORS_DIR"]
