"""What this machine can hold: a fit's per-epoch history is refused up front when it could not fit.

The engine grows its history as epochs run; the pipeline checks the worst case here, when the
params are loaded, so that a typo like ``epochs: 10000000000000`` fails at once instead of hours in.
"""

from __future__ import annotations

import os

import numpy as np

HISTORY_MAX_COLUMNS = 12  # 3 curves (loss, accuracy, log loss) × train, val, test and one more set


def history_bytes(epochs: int, columns: int = HISTORY_MAX_COLUMNS) -> int:
    return int(epochs) * columns * np.dtype(float).itemsize


def memory_bytes() -> int | None:
    """Physical memory of this machine, where the OS says (Linux, macOS)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def history_too_large(epochs: int, columns: int = HISTORY_MAX_COLUMNS) -> str | None:
    """Why ``epochs`` rows of history cannot fit (more than half the machine's memory), or None."""
    need, memory = history_bytes(epochs, columns), memory_bytes()
    if memory is None or need <= memory // 2:
        return None
    return (
        f"{epochs} epochs would need {need / 2**30:.3g} GiB for the per-epoch history alone "
        f"({columns} curves × 8 bytes), over half this machine's {memory / 2**30:.3g} GiB"
    )
