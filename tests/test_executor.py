"""The executor: the same outputs whichever the worker count or cluster, and faults that end cleanly.

Real processes throughout: the sweep stage in a subprocess, a local process pool, and a Dask
scheduler with two workers started here on 127.0.0.1 and stopped by their PIDs.
"""

import concurrent.futures as cf
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import (
    ROOT,
    DaskCluster,
    free_port,
    pipeline_env,
    runs_in,
    scratch,
    sigint_as_in_a_terminal,
    stage,
    wait_for,
    with_sweeps,
)

from backprop.lab.executor import (
    WORKER_NICENESS,
    ExecutorError,
    FitError,
    InProcessExecutor,
    Pool,
    fit_pool,
    worker_count,
)
from backprop.lab.jobs import Job

SWEEP = [
    *("-m", "stages.sweep", "lr", "--settings", "settings/lr.json", "--prepared", "data/prepared"),
    *("--out", "sweeps/lr", "--runs", "runs/lr.json"),
]
OUTPUTS = ("sweeps/lr/results.csv", "sweeps/lr/curves.csv", "sweeps/lr/summary.csv", "runs/lr.json")
# Fifteen fits (3 rates × 5 folds), five of which diverge: enough to interleave on two workers in a few seconds.
SMALL = {"grid": {"lr": [0.003, 0.03, 100000.0]}, "tasks": ["regression"]}
LONG_FITS = 3000  # epochs: fits that last long enough for a worker to be killed while others train


def sweep_folder(tmp_path: Path, prepared: Path, name: str, *, epochs: int = 40) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    scratch(folder, prepared, epochs=epochs)
    with_sweeps(folder, {"lr": SMALL})
    return folder


def outputs_of(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in OUTPUTS[:3]}


def start_sweep(folder: Path, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *SWEEP],
        cwd=folder,
        env=pipeline_env(PYTHONPATH=str(ROOT), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_as_in_a_terminal,
    )


def finished_children(folder: Path) -> int:
    return sum(1 for r in runs_in(folder) if "fold" in r.data.tags and r.info.status == "FINISHED")


# ---- a Dask cluster on 127.0.0.1 -----------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_scheduler():
    """One Dask cluster for the module; ``cluster`` hands it to each test with its workers."""
    with DaskCluster(workers=2) as cluster:
        yield cluster


@pytest.fixture
def cluster(dask_scheduler) -> DaskCluster:
    dask_scheduler.keep_workers()
    return dask_scheduler


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, prepared):
    """The sweep run in this process (BACKPROP_WORKERS=1): what every other executor must match.
    Its budget is too small for its fits, so it warns (``test_a_stage_warns_past_its_budget``)."""
    folder = sweep_folder(tmp_path_factory.mktemp("reference"), prepared, "one")
    result = stage(folder, SWEEP, BACKPROP_WORKERS="1", BACKPROP_STAGE_BUDGET="1e-9")
    assert result.returncode == 0, result.stderr
    assert "in this process" in result.stdout
    return folder, result


# ---- unit: the pool itself -----------------------------------------------------------------------


def _fails(value):
    raise ValueError(f"bad value {value}")


def _square(value):
    return value * value


def test_a_fit_that_raises_is_named_with_its_params():
    pool = Pool(InProcessExecutor(), "in this process", 1)
    jobs = [Job(1, _square, (3,), "lr=0.1 seed=0"), Job(2, _fails, (7,), "lr=3.0 seed=1 (hidden=[16])")]
    with pytest.raises(FitError, match=r"the fit lr=3\.0 seed=1 \(hidden=\[16\]\) failed: bad value 7"):
        list(pool.completed(jobs))


def test_a_process_pool_returns_every_result_under_its_key():
    with cf.ProcessPoolExecutor(2) as executor:
        results = dict(
            (job.key, result)
            for job, result in Pool(executor, "two", 2).completed([Job(k, _square, (k,), f"k={k}") for k in range(6)])
        )
    assert results == {k: k * k for k in range(6)}


@dataclass(frozen=True)
class _Key:
    task: str
    fold: int


def test_results_come_in_the_jobs_order_each_recorded_once_as_it_completes():
    # Job k waits for job k + 1: the fits complete last to first, whatever the threads' timing.
    count = 5
    gates = [threading.Event() for _ in range(count)]
    gates[-1].set()

    def fit(k):
        assert gates[k].wait(30), f"job {k} was never released"
        return k * k

    completed = []

    def record(job, result):
        completed.append((job.key, result))
        if job.key.fold:
            gates[job.key.fold - 1].set()

    jobs = [Job(_Key("regression", k), fit, (k,), f"fold {k}") for k in range(count)]
    with cf.ThreadPoolExecutor(count) as executor:
        results = Pool(executor, "threads", count).start("test", jobs).results(record)
    assert results == [k * k for k in range(count)]
    assert completed == [(_Key("regression", k), k * k) for k in reversed(range(count))]


def test_a_failing_job_names_itself_by_its_key():
    pool = Pool(InProcessExecutor(), "in this process", 1)
    jobs = [Job(_Key("classification", k), _fails if k == 2 else _square, (k,), f"fold {k} lr=0.1") for k in range(4)]
    recorded = []
    with pytest.raises(FitError, match=r"the fit fold 2 lr=0\.1 failed: bad value 2") as error:
        pool.start("test", jobs).results(lambda job, _: recorded.append(job.key))
    assert error.value.key == _Key("classification", 2)
    assert _Key("classification", 2) not in recorded  # no record of a fit that failed


def test_two_jobs_with_one_key_are_refused():
    pool = Pool(InProcessExecutor(), "in this process", 1)
    with pytest.raises(ValueError, match="two jobs share a key"):
        pool.start("test", [Job(_Key("regression", 0), _square, (k,), "f") for k in range(2)])


def test_local_workers_run_below_the_stages_priority(monkeypatch):
    monkeypatch.setenv("BACKPROP_WORKERS", "2")
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with fit_pool() as pool:
        niceness = {result for _, result in pool.completed([Job(k, os.nice, (0,), f"k={k}") for k in range(4)])}
    assert niceness == {min(os.nice(0) + WORKER_NICENESS, 19)}


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_a_bad_worker_count_is_one_clear_error(monkeypatch, value):
    monkeypatch.setenv("BACKPROP_WORKERS", value)
    with pytest.raises(ExecutorError, match=f"BACKPROP_WORKERS must be a whole number >= 1, got '{value}'"):
        worker_count()


# ---- the same outputs wherever the fits ran ------------------------------------------------------


@pytest.mark.e2e
def test_two_local_workers_give_byte_identical_outputs(tmp_path, prepared, local_reference):
    folder = sweep_folder(tmp_path, prepared, "two")
    result = stage(folder, SWEEP, BACKPROP_WORKERS="2")
    assert result.returncode == 0, result.stderr
    # The stage says how many fits, where, and how long they take; within its budget, no warning.
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("sweep lr: 15 fits")]
    assert line.startswith("sweep lr: 15 fits on 2 local worker processes, about ") and line.endswith(" at most")
    assert "warning" not in result.stderr
    # The stage closed its store before skipping the exit's collection: the log is folded in.
    assert (folder / "mlflow.db").exists() and not (folder / "mlflow.db-wal").exists()
    assert outputs_of(folder) == outputs_of(local_reference[0])
    assert finished_children(folder) == 15  # every fit has its run, logged by the stage alone


@pytest.mark.e2e
def test_a_stage_warns_past_its_budget_and_still_runs(local_reference):
    """The reference sweep had a budget its fits exceed: a warning that says what to do, and the
    outputs every other executor matches."""
    folder, result = local_reference
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert "over the 0 s budget (BACKPROP_STAGE_BUDGET)" in warning
    assert "train.batch_size" in warning and "DASK_SCHEDULER_ADDRESS" in warning
    assert all((folder / name).is_file() for name in OUTPUTS)


def test_a_bad_budget_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("BACKPROP_STAGE_BUDGET", "an hour")
    with pytest.raises(ExecutorError, match="BACKPROP_STAGE_BUDGET must be a number of seconds, got 'an hour'"):
        Pool(InProcessExecutor(), "in this process", 1).announce("sweep lr", [1.0])


@pytest.mark.e2e
def test_a_dask_cluster_gives_byte_identical_outputs(tmp_path, prepared, local_reference, cluster):
    folder = sweep_folder(tmp_path, prepared, "dask")
    result = stage(folder, SWEEP, DASK_SCHEDULER_ADDRESS=cluster.address)
    assert result.returncode == 0, result.stderr
    assert f"15 fits on Dask cluster at {cluster.address} (2 workers)" in result.stdout
    assert outputs_of(folder) == outputs_of(local_reference[0])
    assert finished_children(folder) == 15


@pytest.mark.e2e
def test_a_dask_worker_killed_mid_sweep_changes_nothing(tmp_path, prepared, cluster):
    # Long enough fits that the kill lands while others still train.
    reference = sweep_folder(tmp_path, prepared, "reference", epochs=LONG_FITS)
    assert stage(reference, SWEEP, BACKPROP_WORKERS="2").returncode == 0
    folder = sweep_folder(tmp_path, prepared, "killed", epochs=LONG_FITS)
    process = start_sweep(folder, DASK_SCHEDULER_ADDRESS=cluster.address)
    try:
        wait_for(lambda: finished_children(folder) >= 1, 120, "the first fit")
        victim = psutil.Process(cluster.workers[0].pid)
        for child in victim.children(recursive=True):
            child.kill()
        victim.kill()
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert outputs_of(folder) == outputs_of(reference)
    statuses = [r.info.status for r in runs_in(folder)]
    assert "RUNNING" not in statuses and statuses.count("FINISHED") == 19  # 15 fits, 3 points, the sweep's parent


# ---- faults --------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_an_unreachable_scheduler_is_one_line_within_30_seconds(tmp_path, prepared):
    folder = sweep_folder(tmp_path, prepared, "unreachable")
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = stage(folder, SWEEP, DASK_SCHEDULER_ADDRESS=address)
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and f"cannot reach the Dask scheduler at {address}" in errors[0], result.stderr
    assert elapsed < 30, elapsed
    assert not any((folder / name).exists() for name in OUTPUTS)
    assert all(r.info.status != "RUNNING" for r in runs_in(folder))


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _workers(pid: int) -> list[psutil.Process]:
    """The pool's worker processes: the stage's children."""
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process(pid).children()
    return []


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_parallel_sweep_leaves_no_process_and_no_running_run(tmp_path, prepared, signum):
    folder = sweep_folder(tmp_path, prepared, "interrupted", epochs=10_000_000)
    process = start_sweep(folder, BACKPROP_WORKERS="2")
    try:
        wait_for(lambda: len(_workers(process.pid)) == 2, 60, "the worker processes")
        wait_for(lambda: any(r.info.status == "RUNNING" for r in runs_in(folder)), 60, "the sweep's run", process)
        family = _descendants(process.pid)
        time.sleep(0.5)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, f"left running: {[p.pid for p in alive]}"
    assert [r.info.status for r in runs_in(folder)] == ["KILLED"] * 4  # the sweep's parent and its 3 points
    assert not any((folder / name).exists() for name in OUTPUTS)


@pytest.mark.e2e
def test_a_local_worker_that_dies_ends_the_stage_in_one_line(tmp_path, prepared):
    folder = sweep_folder(tmp_path, prepared, "dead-worker", epochs=10_000_000)
    process = start_sweep(folder, BACKPROP_WORKERS="2")
    try:
        wait_for(lambda: len(_workers(process.pid)) == 2, 60, "the worker processes")
        wait_for(lambda: any(r.info.status == "RUNNING" for r in runs_in(folder)), 60, "the sweep's run", process)
        time.sleep(0.5)
        _workers(process.pid)[0].kill()
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "a worker process died" in errors[0] and "lr=" in errors[0], stderr
    assert not any((folder / name).exists() for name in OUTPUTS)
    assert [r.info.status for r in runs_in(folder)] == ["FAILED"] * 4  # the sweep's parent and its 3 points
