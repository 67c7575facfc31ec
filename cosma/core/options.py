"""Command-line pieces both commands share (``cosma`` and ``mallocgame``): the help
formatter that shows defaults, the options that say how an ONNX file is lowered, and the
checks of their values (one implementation each; the values themselves are checked by
``cosma.core.onnx_lower``, which the Python API calls too)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from cosma.core.errors import CosmaError, UsageError

EXIT_INVALID = 1  # the answer is no: a plan that breaks a rule, a packing that does not fit
EXIT_USAGE = 2  # bad input: one line on stderr, no traceback
EXIT_INTERRUPTED = 130  # Ctrl-C


def run_command(prog: str, command: Callable[[], int]) -> int:
    """Both commands' boundary: a ``CosmaError`` is one line on stderr and exit 2, Ctrl-C
    a line and 130; anything else is a bug and keeps its traceback."""
    try:
        return command()
    except CosmaError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless it has none or already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return text
        if "default" in text or not text:
            return text
        return super()._get_help_string(action)


def add_lowering_args(p: argparse.ArgumentParser, dtype_bytes: int | None = None) -> None:
    """``--dtype-bytes``, ``--input-shape`` and ``--batch``: which graph a model lowers to."""
    p.add_argument(
        "--dtype-bytes",
        type=int,
        default=dtype_bytes,
        help="bytes per element for every tensor: 1, 2, 4 or 8 (1 models an 8-bit accelerator)"
        + ("; default: the file's dtypes" if dtype_bytes is None else ""),
    )
    p.add_argument(
        "--input-shape",
        action="append",
        metavar="NAME=DIMS",
        help="fix a graph input's dynamic shape, e.g. input=1x3x224x224 (repeatable)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=1,
        help="size of a dynamic leading (batch) dim of the graph inputs not given by --input-shape",
    )


def lowering_options(args: argparse.Namespace) -> dict[str, Any]:
    """``dtype_bytes``, ``input_shapes`` and ``batch`` from those options, each checked
    (``UsageError`` naming the option)."""
    from cosma.core.onnx_lower import check_batch, check_dtype_bytes, parse_input_shape

    return {
        "dtype_bytes": check_dtype_bytes(args.dtype_bytes, "--dtype-bytes"),
        "input_shapes": dict(parse_input_shape(item) for item in args.input_shape or []),
        "batch": check_batch(args.batch, "--batch"),
    }


def check_positive(value: float | int | None, flag: str) -> None:
    """``flag`` must be a positive number (None: not given); ``UsageError`` naming it."""
    if value is not None and not value > 0:
        unit = " (seconds)" if "time" in flag else ""
        raise UsageError(f"{flag} must be positive{unit}, got {value:g}")


__all__ = ["HelpFormatter", "add_lowering_args", "lowering_options", "check_positive"]
