"""Weight initialisers: each draws a (fan_in, fan_out) matrix from the one generator it is given."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SMALL_UNIFORM_LIMIT = 0.1


def glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def he(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))


def small_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    return rng.uniform(-SMALL_UNIFORM_LIMIT, SMALL_UNIFORM_LIMIT, size=(fan_in, fan_out))


# (rng, fan_in, fan_out) -> a (fan_in, fan_out) weight matrix
Initializer = Callable[[np.random.Generator, int, int], np.ndarray]
INITIALIZERS: dict[str, Initializer] = {"glorot": glorot, "he": he, "uniform": small_uniform}


def get_initializer(name: str) -> Initializer:
    if name not in INITIALIZERS:
        raise ValueError(f"init must be one of {sorted(INITIALIZERS)}, got {name!r}")
    return INITIALIZERS[name]
