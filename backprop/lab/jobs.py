"""A fit as data, and how every executor calls it.

A job names its function and arguments, so the pure parts (the sweep's grid, a stage's folds)
describe their fits without knowing where they run; every fit runs with one BLAS thread, so its
floating-point reductions are the same in a worker, in this process and on a cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

_blas = None  # this process's threadpoolctl controller, made on its first fit


@dataclass(frozen=True)
class Job:
    """One fit: ``fn(*args)`` at coordinates ``key`` (what the outputs are ordered and named by: a
    frozen dataclass or a name, read by field, never by position)."""

    key: Hashable
    fn: Callable
    args: tuple
    describe: str  # the fit's point and params, for an error message


def one_blas_thread(fn: Callable, *args, **kwargs) -> Any:
    """Run ``fn(*args)`` with one BLAS thread: the same reductions whatever the executor, and no
    oversubscription when every core already runs a fit."""
    global _blas
    from threadpoolctl import ThreadpoolController

    if _blas is None:
        _blas = ThreadpoolController()
    with _blas.limit(limits=1, user_api="blas"):
        return fn(*args, **kwargs)
