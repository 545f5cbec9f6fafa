"""What a stage's process spends, for benchmarks/pipeline.py: seconds inside MLflow's calls (wall,
and this thread's CPU: the wall also counts waiting for a core while the workers train), the same
for importing MLflow and opening the store, the runs created and the fits completed."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator

from backprop.lab.outputs import naming


@dataclasses.dataclass
class Costs:
    mlflow_seconds: float = 0.0
    mlflow_cpu_seconds: float = 0.0
    mlflow_open_seconds: float = 0.0
    mlflow_open_cpu_seconds: float = 0.0
    runs: int = 0
    fits: int = 0


COSTS = Costs()  # this process's, since it started


@contextlib.contextmanager
def spent_in_mlflow(opening: bool = False) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        if opening:
            COSTS.mlflow_open_seconds += wall
            COSTS.mlflow_open_cpu_seconds += cpu
        else:
            COSTS.mlflow_seconds += wall
            COSTS.mlflow_cpu_seconds += cpu


def record_timing(seconds: float) -> None:
    """With BACKPROP_TIMINGS=<file>, append this stage's time and its costs (benchmarks)."""
    path = os.environ.get("BACKPROP_TIMINGS")
    if not path:
        return
    record = {"stage": os.environ.get("DVC_STAGE", " ".join(sys.argv[:2])), "seconds": seconds}
    with naming(path), open(path, "a") as handle:
        handle.write(json.dumps(record | dataclasses.asdict(COSTS)) + "\n")
