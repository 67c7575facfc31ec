"""Named accelerator presets. Capacity here is only the default scratchpad size:
every command takes ``--scratchpad`` to override it."""

from __future__ import annotations

from cosma.core.errors import UsageError
from cosma.core.ir import Hardware

KiB = 1024
MiB = 1024 * KiB

PRESETS: dict[str, Hardware] = {
    hw.name: hw
    for hw in (
        Hardware(
            name="edge-npu",
            capacity=2 * MiB,
            alignment=64,
            dram_bytes_per_cycle=16.0,
            macs_per_cycle=2048.0,
            element_bytes=1,
            description="edge NPU: 2 MiB SRAM, int8, 2048 MAC/cycle, 16 B/cycle DRAM (LPDDR4x-class)",
        ),
        Hardware(
            name="mcu",
            capacity=384 * KiB,
            alignment=16,
            dram_bytes_per_cycle=4.0,
            macs_per_cycle=256.0,
            element_bytes=1,
            description="microcontroller NPU (Ethos-U55-class): 384 KiB SRAM, int8, 256 MAC/cycle, 4 B/cycle",
        ),
        Hardware(
            name="tpu-like",
            capacity=128 * MiB,
            alignment=512,
            dram_bytes_per_cycle=600.0,
            macs_per_cycle=65536.0,
            element_bytes=2,
            description="datacenter accelerator (TPUv4-class): 128 MiB on-chip, bf16, 64K MAC/cycle",
        ),
        Hardware(
            name="ideal",
            capacity=1 * MiB,
            alignment=1,
            dram_bytes_per_cycle=1.0,
            macs_per_cycle=1.0,
            element_bytes=1,
            description="byte-aligned unit machine for tests and hand-worked examples",
        ),
    )
}

DEFAULT_HARDWARE = "edge-npu"


class UnknownHardware(UsageError, ValueError):
    """A hardware preset name that is not in ``PRESETS`` (a ``ValueError`` too, as before)."""


def get_hardware(name: str) -> Hardware:
    """The preset ``name``; ``UnknownHardware`` (a ``UsageError``) listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise UnknownHardware(f"unknown hardware preset {name!r}; known presets: {known}") from None
