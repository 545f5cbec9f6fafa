"""Where fits run: one ``concurrent.futures.Executor`` for every stage.

- ``DASK_SCHEDULER_ADDRESS`` set (Dask's own variable): the fits run on that Dask distributed
  cluster, through ``Client.get_executor()``; a worker that dies has its fits recomputed elsewhere.
- otherwise a local process pool over every core; ``BACKPROP_WORKERS=N`` sets the count and
  ``BACKPROP_WORKERS=1`` runs every fit in this process (debugging, profiling).

A fit's result never depends on where or in which order it ran: its seed comes from its own
coordinates (the caller puts it in the config), and every fit runs with one BLAS thread, so the
floating-point reductions are the same in a worker, in this process and on a cluster. Only the
stage's process talks to MLflow: it consumes results as they complete (``Running.results``).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any
from urllib.parse import urlsplit

from backprop.lab.config import shown
from backprop.lab.counters import COSTS
from backprop.lab.jobs import Job, one_blas_thread
from backprop.lab.processes import end_with_parent

WORKERS_VARIABLE = "BACKPROP_WORKERS"
BUDGET_VARIABLE = "BACKPROP_STAGE_BUDGET"  # seconds a stage's fits may take before it warns
DEFAULT_BUDGET_SECONDS = 3600
SCHEDULER_VARIABLE = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT_SECONDS = 10  # an unreachable or mute scheduler fails well within 30 s
WORKERS_TIMEOUT_SECONDS = 10  # for a scheduler with no worker yet to get one
WORKER_NICENESS = 10  # a local worker's priority below the stage's (os.nice)


class ExecutorError(RuntimeError):
    """The executor cannot run the fits (no scheduler, a worker died); the message is one line."""


class FitError(RuntimeError):
    """One fit raised; the message names the fit and its error, ``key`` its coordinates."""

    def __init__(self, message: str, key: Hashable = None):
        super().__init__(message)
        self.key = key


class Running:
    """Jobs a pool has started: ``results`` collects them."""

    def __init__(self, pool: Pool, jobs: Sequence[Job], futures: dict):
        self.pool, self.jobs, self._futures = pool, jobs, futures

    def results(self, each: Callable[[Job, Any], None] | None = None, progress=None) -> list:
        """Every job's result, in the jobs' order whichever order they completed in. As each
        completes, ``each(job, result)`` (what the stage records of it: its MLflow run) and
        ``progress.update()``."""
        done = {}
        for job, result in self.pool.completed(self._futures):
            if each is not None:
                each(job, result)
            if progress is not None:
                progress.update()
            done[job.key] = result
        return [done[job.key] for job in self.jobs]


def _worker_start() -> None:
    # Ctrl-C reaches the whole process group; the stage alone decides, and ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # The stage's own process is the stage's critical path: it imports and opens MLflow while the
    # first fits run, and logs each fit as it completes. With as many workers as cores it would
    # get a third of a core; a lower priority for the workers lets it run whenever it has work,
    # and the workers take every cycle it leaves.
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    end_with_parent(signal.SIGKILL)  # even after a kill -9 of the stage


class InProcessExecutor(cf.Executor):
    """``BACKPROP_WORKERS=1``: each fit runs when it is submitted, in this process."""

    def submit(self, fn, /, *args, **kwargs):
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise
            future.set_exception(error)
        return future


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def worker_cap() -> int:
    """The most local workers: one per core (a fit is pure CPU, so more only queue for the same
    cores and copy the stage's memory), and at least two, so the pool runs on one core too."""
    return max(cores(), 2)


def worker_count() -> int:
    value = os.environ.get(WORKERS_VARIABLE, "").strip()
    if not value:
        return cores()
    if not value.isdigit() or int(value) < 1:
        raise ExecutorError(f"{WORKERS_VARIABLE} must be a whole number >= 1, got {shown(value)}")
    if int(value) > worker_cap():
        print(
            f"warning: {WORKERS_VARIABLE}={shown(int(value))} is more than this machine's {cores()} cores: "
            f"using {worker_cap()} worker processes (more would only queue for the same cores)",
            file=sys.stderr,
            flush=True,
        )
        return worker_cap()
    return int(value)


class Pool:
    """The executor of one stage, with what the stage prints about it."""

    def __init__(self, executor: cf.Executor, description: str, workers: int, client=None):
        self.executor, self.description, self.workers, self._client = executor, description, workers, client

    def announce(self, stage: str, seconds: Sequence[float]) -> None:
        """What a stage prints before its fits start: how many, where, and how long at most
        (``seconds`` per fit, from a few measured epochs); past the budget (``BACKPROP_STAGE_BUDGET``,
        default an hour) a warning on stderr that says what to do about it."""
        total = sum(seconds) / self.workers
        print(f"{stage}: {len(seconds)} fits on {self.description}, about {duration(total)} at most", flush=True)
        value = os.environ.get(BUDGET_VARIABLE, "").strip()
        try:
            budget = float(value) if value else DEFAULT_BUDGET_SECONDS
        except ValueError:
            raise ExecutorError(f"{BUDGET_VARIABLE} must be a number of seconds, got {value!r}") from None
        if total > budget:
            print(
                f"warning: {stage} may take about {duration(total)}, over the {duration(budget)} budget "
                f"({BUDGET_VARIABLE}): use mini-batches (train.batch_size), fewer epochs or seeds, or run the "
                f"fits on a Dask cluster (DASK_SCHEDULER_ADDRESS)",
                file=sys.stderr,
                flush=True,
            )

    def start(self, stage: str, jobs: Sequence[Job], estimate: Callable[[], Sequence[float]] | None = None) -> Running:
        """Fan the jobs out (``submit``) and ``announce`` them with ``estimate()`` (seconds per fit,
        from a few epochs timed here; no estimate, no announcement). Workers start on the jobs
        first, so the timing and whatever the stage sets up next (MLflow) overlap their fits; in
        this process (one worker) each fit runs as it is submitted, so the announcement comes first."""
        keys = [job.key for job in jobs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{stage}: two jobs share a key; results are ordered by key")
        if estimate is not None and isinstance(self.executor, InProcessExecutor):
            self.announce(stage, estimate())
            return Running(self, jobs, self.submit(jobs))
        running = Running(self, jobs, self.submit(jobs))
        if estimate is not None:
            self.announce(stage, estimate())
        return running

    def share(self, value: Any) -> Any:
        """``value`` as an argument for many fits: sent once to a Dask cluster, as is elsewhere."""
        if self._client is None:
            return value
        return self._client.scatter(value, broadcast=True, hash=False)

    def submit(self, jobs: Sequence[Job]) -> dict:
        """Start every job now (future -> job), so the fits run while the stage does its own
        slow set-up (importing and opening MLflow); ``completed`` then collects them."""
        try:
            return {self.executor.submit(one_blas_thread, job.fn, *job.args): job for job in jobs}
        except BrokenProcessPool:
            raise ExecutorError("a worker process died (killed, or out of memory) before the fits started") from None

    def completed(self, jobs: Sequence[Job] | dict) -> Iterator[tuple[Job, Any]]:
        """Yield (job, result) as each job completes, submitting them first unless ``submit``
        did. A fit that raises ends the stage with a FitError naming it; a pool that breaks, with
        an ExecutorError."""
        futures = jobs if isinstance(jobs, dict) else self.submit(jobs)
        for future in cf.as_completed(futures):
            job = futures[future]
            try:
                result = future.result()
            except BrokenProcessPool:
                raise ExecutorError(
                    f"a worker process died (killed, or out of memory) during the fit {job.describe}; "
                    "no outputs written"
                ) from None
            except cf.CancelledError:
                raise ExecutorError(f"the fit {job.describe} was cancelled by the cluster") from None
            except Exception as error:
                if type(error).__name__ == "KilledWorker":  # Dask gave up on it after workers died
                    raise ExecutorError(f"Dask workers kept dying during the fit {job.describe}") from None
                message = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise FitError(f"the fit {job.describe} failed: {message}", job.key) from error
            COSTS.fits += 1
            yield job, result

    def close(self, *, abort: bool) -> None:
        if self._client is not None:
            self.executor.shutdown(wait=not abort)
            self._client.close()
            return
        if isinstance(self.executor, cf.ProcessPoolExecutor) and abort:
            # The workers are stopped first, so no fit outlives the stage; the pool then finds
            # itself broken and fails what was still queued (cancelling those first would make
            # CPython 3.11's pool thread trip over futures that are already done).
            processes = list(getattr(self.executor, "_processes", {}).values())
            for process in processes:
                with contextlib.suppress(Exception):
                    process.kill()
            for process in processes:
                with contextlib.suppress(Exception):
                    process.join(5)
            self.executor.shutdown(wait=False)
            # Its manager thread then closes its wake-up pipe; at exit CPython 3.11 writes to that
            # pipe unlocked and may find it half closed ("Bad file descriptor" on stderr). Once
            # the thread has ended, the pipe is marked closed and exit leaves it alone.
            manager = getattr(self.executor, "_executor_manager_thread", None)
            if manager is not None:
                manager.join(5)
            return
        self.executor.shutdown(wait=True)


def check_scheduler_answers(address: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Raise ExecutorError unless the scheduler at a ``tcp://`` address says something within
    ``timeout``. A Dask peer writes its handshake as soon as a connection opens; Dask's own
    connect timeout covers the TCP connection, not that handshake, so a scheduler that accepts
    and never answers (hung, or not Dask at all) would keep ``Client()`` waiting forever."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp" or parts.port is None:
        return  # TLS, in-process and other transports: Dask's own timeout applies
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            if connection.recv(1):
                return
            reason = "it closed the connection without a word"
    except TimeoutError:
        reason = "it accepts connections but does not answer (hung, or not a Dask scheduler?)"
    except OSError as error:
        reason = error.strerror or type(error).__name__
    raise ExecutorError(
        f"cannot reach the Dask scheduler at {address} ({SCHEDULER_VARIABLE}) within {timeout} s: {reason}"
    )


def _dask_pool(address: str) -> Pool:
    try:
        import dask
        from distributed import Client
    except ImportError:  # pragma: no cover - a pinned dependency
        raise ExecutorError(f"{SCHEDULER_VARIABLE} is set but the `distributed` package is not installed") from None
    check_scheduler_answers(address)
    timeout = f"{CONNECT_TIMEOUT_SECONDS}s"
    with dask.config.set({"distributed.comm.timeouts.connect": timeout}):
        try:
            client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ExecutorError(
                f"cannot reach the Dask scheduler at {address} ({SCHEDULER_VARIABLE}) within "
                f"{CONNECT_TIMEOUT_SECONDS} s: {reason}"
            ) from None
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_SECONDS)
    except (OSError, TimeoutError):
        client.close()
        raise ExecutorError(
            f"the Dask scheduler at {address} ({SCHEDULER_VARIABLE}) has no workers (none joined within "
            f"{WORKERS_TIMEOUT_SECONDS} s): start some with `dask worker {address} --nthreads 1`"
        ) from None
    workers = len(client.scheduler_info().get("workers", {}))
    return Pool(
        client.get_executor(pure=False), f"Dask cluster at {address} ({workers} workers)", max(workers, 1), client
    )


def _local_pool() -> Pool:
    """The local pool, its workers not started yet (``start_workers``)."""
    count = worker_count()
    if count == 1:
        return Pool(InProcessExecutor(), "in this process (BACKPROP_WORKERS=1)", 1)
    # fork: the workers start as copies of the stage with everything already imported (a spawned
    # or fork-server worker would import the stage's module again, MLflow and all: seconds of CPU
    # per worker per stage). Safe here because the pool starts before the stage opens MLflow or
    # starts any thread: nothing is mid-flight in the copy.
    context = multiprocessing.get_context("fork")
    executor = cf.ProcessPoolExecutor(max_workers=count, mp_context=context, initializer=_worker_start)
    return Pool(executor, f"{count} local worker processes", count)


def start_workers(pool: Pool) -> None:
    """Fork a local pool's workers now, while the stage has no thread and no open store. Ctrl-C
    and SIGTERM wait until every worker is forked and listed in the pool, so the interrupt's
    clean-up (``Pool.close``) finds and ends each one: none is forked after the list is read."""
    if not isinstance(pool.executor, cf.ProcessPoolExecutor):
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT, signal.SIGTERM))
    try:
        pool.executor.submit(int)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


@contextlib.contextmanager
def fit_pool() -> Iterator[Pool]:
    """The stage's executor: Dask when ``DASK_SCHEDULER_ADDRESS`` is set, else a local pool."""
    address = os.environ.get(SCHEDULER_VARIABLE, "").strip()
    pool = _dask_pool(address) if address else _local_pool()
    try:
        start_workers(pool)
        yield pool
    except BaseException:
        pool.close(abort=True)
        raise
    pool.close(abort=False)
