"""How a stage's process runs: bad input ends in one line on stderr and exit 2, an interruption
in exit 130 with nothing written, a progress bar for interactive runs."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from collections.abc import Callable

from backprop.lab.config import ConfigError
from backprop.lab.counters import record_timing
from backprop.lab.datasets import DataError
from backprop.lab.executor import ExecutorError, FitError
from backprop.lab.failures import environment_message, scrub
from backprop.lab.outputs import remove_stale_staging
from backprop.lab.processes import end_with_parent, exit_steps, raise_interrupt
from backprop.lab.store import close_stores


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(): bad input ends in one line on stderr and exit 2; SIGINT and
    SIGTERM unwind like Ctrl-C (MLflow runs end KILLED, staged outputs are discarded), exit 130.
    A full disk, a read-only store, no memory or a broken MLflow store is one line and exit 2 too."""
    signal.signal(signal.SIGTERM, raise_interrupt)
    end_with_parent(signal.SIGTERM)  # dvc killed: SIGTERM, which unwinds like Ctrl-C
    remove_stale_staging()
    started = time.perf_counter()
    try:
        _run_main(main, started)
    finally:
        # The interpreter's last collection walks every object MLflow, SQLAlchemy and pandas made:
        # 0.7 s of every stage's exit, measured, on the pipeline's critical path. By now the outputs
        # are in place and the store has committed; only its connections are left to close.
        for step in exit_steps:
            step()
        close_stores()
        gc.freeze()


def _run_main(main: Callable[[], None], started: float) -> None:
    try:
        main()
        record_timing(time.perf_counter() - started)
    except (ConfigError, DataError, ExecutorError, FitError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as error:
        if os.environ.get("BACKPROP_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as interrupt:
        print(f"interrupted ({interrupt or 'SIGINT'}): no outputs written", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:
        message = environment_message(error)
        if message is None or os.environ.get("BACKPROP_DEBUG"):
            raise
        print(f"error: {scrub(message)}", file=sys.stderr)
        raise SystemExit(2) from None


def progress_bar(total: int, description: str, unit: str = "epoch"):
    """A tqdm bar on stderr for interactive runs; silent in CI and when output is not a terminal."""
    from tqdm import tqdm

    quiet = bool(os.environ.get("CI")) or None  # None: tqdm turns itself off without a TTY
    return tqdm(total=total, desc=description, unit=unit, leave=False, disable=quiet, mininterval=0.5)
