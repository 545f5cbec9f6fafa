"""This process and its neighbours: Ctrl-C and SIGTERM, the parent's death, whether a pid lives,
and what a stage does last."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable

INTERRUPTS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def raise_interrupt(signum, frame):
    """A SIGTERM handler that unwinds like Ctrl-C: runs end KILLED, staged outputs are discarded."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def end_with_parent(signum: signal.Signals) -> None:
    """On Linux, ask the kernel for ``signum`` when the parent dies (dvc for a stage, the stage for
    a worker), so nothing trains on as an orphan. Elsewhere there is no such call."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def defer_interrupts() -> tuple[dict, list] | None:
    """Hold Ctrl-C and SIGTERM back: their handlers only note them until ``resume_interrupts``.
    (A signal mask would not do: the kernel hands a process's signal to any thread that does not
    block it, and MLflow runs threads of its own.) None outside the main thread, where Python
    delivers no signal anyway."""
    if threading.current_thread() is not threading.main_thread():
        return None
    caught: list[int] = []
    previous = {number: signal.signal(number, lambda got, _frame: caught.append(got)) for number in INTERRUPTS}
    return previous, caught


def resume_interrupts(held: tuple[dict, list] | None) -> None:
    """Put the handlers back and pass on the first signal that came meanwhile, as if it came now."""
    if held is None:
        return
    previous, caught = held
    for number, handler in previous.items():
        signal.signal(number, handler if handler is not None else signal.SIG_DFL)
    if caught:
        handler = previous[caught[0]]
        if callable(handler):
            handler(caught[0], None)
        elif handler in (signal.SIG_DFL, None):
            os.kill(os.getpid(), caught[0])


# What a stage does last, once its outputs are in place or discarded: steps that modules register
# when imported (the tracking module ends the runs a failing store left RUNNING), so the stage
# runner imports none of them and a stage that never tracks does not depend on tracking code.
exit_steps: list[Callable[[], None]] = []


def at_stage_exit(step: Callable[[], None]) -> None:
    if step not in exit_steps:
        exit_steps.append(step)
