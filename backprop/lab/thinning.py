"""Evenly thinned epochs: the steps a curve keeps when it is drawn or logged with fewer points."""

from __future__ import annotations

import numpy as np


def downsample_steps(n: int, most: int) -> np.ndarray:
    """At most ``most`` evenly spread epochs, always the first and the last."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(int))
