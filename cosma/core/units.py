"""Byte sizes as people write them: ``384KiB``, ``2MB``, ``1.5MiB``, ``1048576``."""

from __future__ import annotations

import re

from cosma.core.errors import UsageError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}

TIERS = ("M_R", "M_H", "M_P")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes from ``text``; raises ``UsageError`` naming the accepted forms."""
    m = _SIZE.match(str(text))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS:
        raise UsageError(
            f"cannot read size {text!r}: write bytes (1048576), or a number with KiB/MiB/GiB/KB/MB/GB"
            f" (384KiB, 1.5MiB), or a tier ({', '.join(TIERS)})"
        )
    value = float(m.group(1)) * _UNITS[unit]
    if value != int(value):
        raise UsageError(f"size {text!r} is not a whole number of bytes")
    if value <= 0:
        raise UsageError(f"size {text!r} must be positive")
    return int(value)


def is_tier(text: str) -> bool:
    return str(text).strip().upper().replace("-", "_") in TIERS


def normalize_tier(text: str) -> str:
    tier = str(text).strip().upper().replace("-", "_")
    if tier not in TIERS:
        raise UsageError(f"unknown tier {text!r}; tiers are {', '.join(TIERS)}")
    return tier


def format_bytes(n: int | float | None) -> str:
    """``1536 -> '1.5 KiB'``; exact bytes below 1 KiB."""
    if n is None:
        return "-"
    n = float(n)
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


__all__ = ["TIERS", "parse_size", "is_tier", "normalize_tier", "format_bytes"]
