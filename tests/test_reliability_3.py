"""Reliability, round 3 (issue #22): each attack of the review, rerun against the fix.

In-process where the attack was a value (a grid, a params file, a table); real processes where
it was a process: a TCP listener that never answers, a FIFO and a device behind `make repro`, a
stage forking more workers than cores then SIGTERM, a corrupt and a full store. Every process a
test starts is stopped by its PID.
"""

import contextlib
import itertools
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml
from conftest import ROOT, DaskCluster, pipeline_env, runs_in, scratch, stage, with_sweeps
from test_bad_input import PARAMS, with_changes

from backprop.lab import datafiles, executor, failures
from backprop.lab.config import (
    MAX_EXPANDED_VALUES,
    SHOWN_CHARACTERS,
    ConfigError,
    load_data,
    load_sweep,
    load_tracking,
    load_train,
    read_params,
)
from backprop.lab.datasets import DataError, prepare

DIABETES = pd.read_csv(ROOT / "data" / "diabetes.csv")
CANCER = pd.read_csv(ROOT / "data" / "breast_cancer.csv")
SWEEP = [
    *("-m", "stages.sweep", "lr", "--settings", "settings/lr.json", "--prepared", "data/prepared"),
    *("--out", "sweeps/lr", "--runs", "runs/lr.json"),
]


def one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


# ---- 3. grid values repeated by value -------------------------------------------------------------


@pytest.mark.parametrize(
    "key, values, message",
    [
        ("lr", [1, 1.0], "sweep.s.grid.lr lists one value twice: 1 and 1.0 (the same lr)"),
        ("hidden", [[16], [16]], "sweep.s.grid.hidden lists one value twice: [16] and [16]"),
        ("hidden", [16, [16]], "sweep.s.grid.hidden lists one value twice: 16 and [16]"),
    ],
)
def test_a_grid_value_repeated_by_value_is_refused_at_load_naming_the_key(key, values, message):
    with pytest.raises(ConfigError) as error:
        load_sweep(with_changes("sweep", s={"grid": {key: values}, "tasks": ["regression"]}))
    assert message in str(error.value) and "\n" not in str(error.value)
    # Layer lists that differ are a grid (the README's example).
    load_sweep(
        with_changes(
            "sweep", s={"grid": {"hidden": [[16], [16, 16]]}, "fixed": {"patience": 0}, "tasks": ["regression"]}
        )
    )


# ---- 4. a YAML alias bomb -------------------------------------------------------------------------


def alias_bomb(levels: int = 9) -> str:
    """params.yaml with train.lr a list of ``levels`` lists, each of 9 aliases to the one before:
    1 KB on disk, 9**9 values expanded."""
    names = [f"l{level}" for level in range(levels)]
    lists = ["&l0 [" + ", ".join(['"lol"'] * 9) + "]"]
    lists += [f"&{name} [" + ", ".join([f"*{previous}"] * 9) + "]" for previous, name in itertools.pairwise(names)]
    params = yaml.safe_dump(PARAMS, sort_keys=False)
    return params.replace("\n  lr: 0.1\n", f"\n  lr: [{', '.join(lists)}]\n", 1)


def test_a_yaml_alias_bomb_is_refused_before_anything_expands_it(tmp_path):
    (tmp_path / "params.yaml").write_text(alias_bomb())
    started = time.monotonic()
    with pytest.raises(ConfigError) as error:
        read_params(tmp_path / "params.yaml")
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert "params.yaml: train.lr (line " in message and f"more than {MAX_EXPANDED_VALUES} values" in message
    assert "\n" not in message
    # The same params with a few aliases (what YAML users write) load.
    (tmp_path / "params.yaml").write_text(alias_bomb(levels=2))
    assert len(read_params(tmp_path / "params.yaml")["train"]["lr"]) == 2


def test_a_message_about_a_huge_value_is_cut_short():
    tree = ["lol"] * 9
    for _ in range(8):  # the expanded bomb, as shared Python lists: its repr would never end
        tree = [tree] * 9
    started = time.monotonic()
    with pytest.raises(ConfigError) as error:
        load_train(with_changes("train", lr=tree))
    assert time.monotonic() - started < 5
    assert str(error.value).startswith("train.lr must be a number, got [[[[")
    assert len(str(error.value)) < SHOWN_CHARACTERS + 100


# ---- 4 and 7: `make repro` checks what DVC would hang on, before DVC runs ---------------------------


@pytest.mark.parametrize("attack", ["alias bomb", "fifo", "/dev/zero"])
def test_make_repro_refuses_what_dvc_would_hang_on_before_dvc_runs(tmp_path, attack):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    params = alias_bomb() if attack == "alias bomb" else yaml.safe_dump(PARAMS, sort_keys=False)
    (tmp_path / "params.yaml").write_text(params)
    (tmp_path / "data").mkdir()
    shutil.copy(ROOT / "data" / "breast_cancer.csv", tmp_path / "data")
    if attack == "fifo":
        os.mkfifo(tmp_path / "data" / "diabetes.csv")
    elif attack == "/dev/zero":
        (tmp_path / "data" / "diabetes.csv").symlink_to("/dev/zero")
    else:
        shutil.copy(ROOT / "data" / "diabetes.csv", tmp_path / "data")
    started = time.monotonic()
    # -o: the venv counts as installed (the recipe would build one in the copy).
    result = subprocess.run(
        ["make", "-o", ".venv/.installed-stamp", "repro"],
        cwd=tmp_path,
        env=pipeline_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 30
    assert result.returncode != 0 and "dvc repro" not in result.stdout, result.stdout
    line = one_error_line(result.stderr)
    expected = {
        "alias bomb": "params.yaml: train.lr (line",
        "fifo": "data.regression.path: data/diabetes.csv is a FIFO (named pipe), not a CSV file; DVC would hash it",
        "/dev/zero": "data.regression.path: data/diabetes.csv is a character device, not a CSV file",
    }[attack]
    assert expected in line


# ---- 5. a corrupt store, timed --------------------------------------------------------------------


@pytest.mark.e2e
def test_a_corrupt_store_is_one_line_within_10_s(tmp_path, prepared):
    from test_hardening import TRAIN

    folder = scratch(tmp_path, prepared)
    (folder / "mlflow.db").write_bytes(b"these are not the pages of a SQLite database\n" * 100)
    started = time.monotonic()
    result = stage(folder, TRAIN)
    elapsed = time.monotonic() - started
    assert result.returncode == 2 and elapsed <= 10, (elapsed, result.stderr[-2000:])
    line = one_error_line(result.stderr)
    assert "mlflow.db is corrupt (file is not a database)" in line and "WARNING" not in result.stderr
    assert (folder / "mlflow.db").read_bytes().startswith(b"these are not"), "the store was touched"


# ---- 6 and 12: a Dask scheduler that never answers, one with no workers ------------------------------


class MuteListener:
    """Accepts TCP connections on 127.0.0.1 and never says a word: a hung scheduler."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self.socket.getsockname()[1]}"
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.socket.accept()[0])

    def close(self):
        self.socket.close()
        for connection in self.held:
            connection.close()


@pytest.mark.e2e
def test_a_mute_dask_scheduler_fails_within_30_s_naming_its_address(monkeypatch):
    listener = MuteListener()
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", listener.address)
    started = time.monotonic()
    try:
        with pytest.raises(executor.ExecutorError) as error, executor.fit_pool():
            pass
    finally:
        listener.close()
    assert time.monotonic() - started <= 30
    assert listener.held, "the listener was never connected to"
    assert f"cannot reach the Dask scheduler at {listener.address}" in str(error.value)
    assert "does not answer" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.e2e
def test_a_dask_scheduler_without_workers_says_so(monkeypatch):
    with DaskCluster(workers=0) as cluster:
        address = cluster.address
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
        monkeypatch.setattr(executor, "WORKERS_TIMEOUT_SECONDS", 1)
        with pytest.raises(executor.ExecutorError) as error, executor.fit_pool():
            pass
    assert f"the Dask scheduler at {address} (DASK_SCHEDULER_ADDRESS) has no workers" in str(error.value)


# ---- 8. a header field past the csv module's limit ---------------------------------------------------


def test_a_huge_header_field_is_one_line(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("age," + "x" * (140 * 1024) + ",progression\n1,2,3\n4,5,6\n")
    with pytest.raises(DataError) as error:
        datafiles.read_csv(path)
    assert str(error.value) == (
        f"{path} is not a readable CSV: a header field is longer than 131072 characters (a column name?)"
    )


# ---- 9. more workers than cores, then SIGTERM ----------------------------------------------------------


def session_processes(session: int) -> list[int]:
    """Every live process of a session (the stage's, started with start_new_session)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) == session and Path(f"/proc/{entry}/stat").read_text().split()[2] != "Z":
                    found.append(int(entry))
    return found


@pytest.mark.e2e
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="lists processes through /proc")
def test_a_worker_count_over_the_cap_is_clamped_and_sigterm_leaves_no_process(tmp_path, prepared):
    folder = scratch(tmp_path, prepared, epochs=10_000_000)
    with_sweeps(folder, {"lr": {"grid": {"lr": [0.01, 0.1]}, "tasks": ["regression"]}})
    process = subprocess.Popen(
        [sys.executable, *SWEEP],
        cwd=folder,
        env=pipeline_env(PYTHONPATH=str(ROOT), BACKPROP_WORKERS="100000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(r.info.status == "RUNNING" for r in runs_in(folder)):
            assert time.monotonic() < deadline and process.poll() is None, "the sweep did not start"
            time.sleep(0.2)
        workers = [child for child in psutil.Process(process.pid).children() if child.name().startswith("python")]
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
        deadline = time.monotonic() + 10
        while session_processes(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = session_processes(process.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    cap = executor.worker_cap()
    assert len(workers) == cap and f"on {cap} local worker processes" in stdout
    assert f"warning: BACKPROP_WORKERS=100000 is more than this machine's {executor.cores()} cores" in stderr
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert not left, f"left running: {left}"
    assert [r.info.status for r in runs_in(folder)] == ["KILLED"] * 3  # the sweep's run and its 2 points


# ---- 10. leaks refused in prepare ------------------------------------------------------------------


def prepared_table(frame, target="progression", task="regression", **changes):
    settings = dict(source="t.csv", target=target, task=task, accuracy="mape", scale_target=False, folds=5)
    return prepare(frame, **settings | dict(repeats=1, val_size=0.2, seed=0) | changes)


def cancer_with(name: str, values) -> pd.DataFrame:
    frame = CANCER.copy()
    frame.insert(3, name, values)
    return frame


@pytest.mark.parametrize(
    "frame, target, task, message",
    [
        (
            pd.concat([DIABETES, DIABETES]),
            "progression",
            "regression",
            r"t\.csv: rows 2, 444 have the same features and land in different roles \(.+ in repeat 0 fold \d\); "
            r"884 rows repeat",
        ),
        (
            cancer_with("malignant ", CANCER["malignant"]),
            "malignant",
            "classification",
            r"t\.csv: feature 'malignant ' is named like the target 'malignant'",
        ),
        (
            cancer_with("score", CANCER["malignant"] * 2 + 1e-6 * np.arange(len(CANCER))),
            "malignant",
            "classification",
            r"t\.csv: feature 'score' has correlation 1\.0000 with the target 'malignant' \(\|r\| >= 0\.999\)",
        ),
    ],
    ids=["every row twice", "the target with a trailing space", "a rescaled target"],
)
def test_leaks_are_refused_naming_the_rows_or_column_unless_allowed(frame, target, task, message):
    with pytest.raises(DataError, match=message) as error:
        prepared_table(frame, target, task)
    assert "\n" not in str(error.value) and "data.allow_leaks: true" in str(error.value)
    assert prepared_table(frame, target, task, allow_leaks=True).X.shape[0] == len(frame)


def test_the_committed_datasets_have_no_leak_and_the_flag_is_a_params_key():
    data = load_data(PARAMS)
    assert data.allow_leaks is False
    for task, frame in (("regression", DIABETES), ("classification", CANCER)):
        spec = data.task(task)
        prepared_table(frame, spec.target, task, folds=data.folds, seed=data.seed)
    with pytest.raises(ConfigError, match=r"data\.allow_leaks must be true or false, got 'yes'"):
        load_data(with_changes("data", allow_leaks="yes"))


# ---- 11. an experiment name MLflow would refuse, at load ---------------------------------------------


@pytest.mark.parametrize(
    "name, message",
    [
        ("backprop.v2", "tracking.experiment 'backprop.v2' cannot name an MLflow model: it contains '.'"),
        ("x" * 600, "tracking.experiment is 600 characters long, at most 241 fit"),
        ("team/backprop", "tracking.experiment 'team/backprop' cannot name an MLflow model: it contains '/'"),
    ],
)
def test_an_experiment_name_mlflow_would_refuse_fails_at_load_naming_the_key(name, message):
    with pytest.raises(ConfigError) as error:
        load_tracking(with_changes("tracking", experiment=name))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert len(str(error.value)) < 400


# ---- 12. messages that name the cause and the object ----------------------------------------------------


def test_a_locked_store_says_database_is_locked_not_the_autoflush_hint(tmp_path):
    """The chain MLflow raises for a locked SQLite store: SQLAlchemy's OperationalError, raised
    during a query's autoflush (its message starts with the hint), wrapped in an MlflowException."""
    import sqlalchemy as sa
    from mlflow.exceptions import MlflowException
    from sqlalchemy.orm import Session, declarative_base

    Base = declarative_base()

    class Run(Base):
        __tablename__ = "runs"
        id = sa.Column(sa.Integer, primary_key=True)

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'mlflow.db'}", connect_args={"timeout": 0.1})
    Base.metadata.create_all(engine)
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with Session(engine) as session:
            session.add(Run(id=1))
            try:
                session.query(Run).all()
            except sa.exc.OperationalError as error:
                try:
                    raise MlflowException(message=error) from error
                except MlflowException as wrapped:
                    chain = wrapped
    finally:
        holder.close()
        engine.dispose()
    assert str(chain).startswith("(raised as a result of Query-invoked autoflush")
    message = failures.environment_message(chain)
    assert message.endswith("failed: database is locked (another process holds a write lock on it for too long)")


@contextlib.contextmanager
def small_disk(path: Path, megabytes: int):
    """A real file system of ``megabytes`` (tmpfs), for a real full disk; needs mount rights."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small file system here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.e2e
def test_a_store_that_fills_mid_sweep_is_one_line_naming_it_and_the_run_ends_failed(tmp_path, prepared):
    with small_disk(tmp_path / "disk", 20) as disk:
        folder = scratch(disk, prepared)
        params = with_sweeps(folder, {"lr": {"grid": {"lr": [0.01]}, "tasks": ["regression"]}})
        assert stage(folder, SWEEP).returncode == 0  # the store and its reserve exist, as after any run
        # A grid whose runs need more than the disk has left, filled to 250 KB: the sweep's parent
        # run is created, and the disk fills while its fits are logged.
        params["sweep"]["lr"]["grid"]["lr"] = [0.001 * (i + 1) for i in range(40)]
        params["tracking"]["max_logged_steps"]["sweep"] = 40
        (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        free = shutil.disk_usage(disk).free
        (disk / "filler").write_bytes(bytes(free - 250 * 1024))
        result = stage(folder, SWEEP)
        (disk / "filler").unlink()
        assert result.returncode == 2
        line = one_error_line(result.stderr)
        assert line == f"error: {folder / 'mlflow.db'}: no space left on the device (disk full)"
        assert "warning" not in result.stderr and "Traceback" not in result.stderr
        statuses = [r.info.status for r in runs_in(folder) if "fold" not in r.data.tags]
        # The first sweep's run and its point FINISHED; this one's run and the points it made, FAILED.
        assert statuses.count("FINISHED") == 2 and "FAILED" in statuses, statuses
        assert set(statuses) == {"FAILED", "FINISHED"}, statuses


# ---- 13. the docs say what is recorded and how to run Dask safely -----------------------------------


def test_the_readme_describes_divergence_as_recorded_and_a_private_dask_scheduler():
    operations = (ROOT / "docs" / "operations.md").read_text()  # the README's long sections live in docs/
    everything = "".join(path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    wrong = operations.split("## When something is wrong", 1)[1].split("\n## ", 1)[0]
    assert "outcome=diverged" in wrong and "diverged=true" not in everything and '"diverged": true' not in everything
    assert "`outcomes.diverged`" in wrong and "`diverged_epoch`" in wrong
    recipe = operations.split("- **Sweeps on a cluster.**", 1)[1].split("\n## ", 1)[0]
    schedulers = [line for line in recipe.splitlines() if line.strip().startswith("dask scheduler")]
    assert schedulers and all("0.0.0.0" not in line for line in schedulers)
    assert "unauthenticated pickle" in recipe and "--protocol tls" in recipe and "--tls-ca-file" in recipe
    assert "python -m backprop.lab.preflight" in (ROOT / "Makefile").read_text()


# ---- an interrupt while a run is created or ended ----------------------------------------------


@pytest.mark.parametrize("call", ["create_run", "set_terminated"])
def test_an_interrupt_inside_the_call_that_creates_or_ends_a_run_leaves_it_ended(tmp_path, monkeypatch, call):
    """Ctrl-C that lands while MLflow writes the run's row (sent from inside the real call, after
    it wrote): the run ends KILLED, or FINISHED once its end was written, never RUNNING."""
    from mlflow import MlflowClient

    from backprop.lab.tracking import Tracker

    monkeypatch.chdir(tmp_path)
    tracker = Tracker("interrupted", uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker.pipeline_run()  # the run that groups the stage's: made before the interrupt is armed
    real = getattr(tracker.client, call)

    def then_ctrl_c(*args, **kwargs):
        result = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # where the handler would run without the deferral
        return result

    monkeypatch.setattr(tracker.client, call, then_ctrl_c)
    # Ctrl-C as a terminal user's process has it (a test runner's worker may ignore SIGINT).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), tracker.run("fit", {"stage": "train"}):
            pass
    finally:
        signal.signal(signal.SIGINT, previous)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("interrupted").experiment_id])
    (fit,) = [r for r in runs if "backprop.pipeline" not in r.data.tags]
    assert fit.info.status == ("KILLED" if call == "create_run" else "FINISHED")
    assert "RUNNING" not in {r.info.status for r in runs}  # nor the pipeline run that groups it
