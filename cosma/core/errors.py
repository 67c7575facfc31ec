"""Errors for bad input. The CLI prints their message on one line and exits non-zero;
they never carry a traceback to the user. Solvers raise them only for malformed input:
outcomes such as infeasibility are results, not exceptions."""


class CosmaError(Exception):
    """Base of every error cosma reports to the user as one line."""


class ModelError(CosmaError):
    """The ONNX file cannot be lowered: malformed, truncated, dynamic shapes, control flow,
    unsupported or zero-size tensors. The message names the node or tensor at fault."""


class CapacityError(CosmaError):
    """The scratchpad cannot hold the largest operator's operands (below ``M_R``)."""


class UsageError(CosmaError):
    """A bad option value: a size or tier typo, an unknown preset, an unreadable plan file."""
