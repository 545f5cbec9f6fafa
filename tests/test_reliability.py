"""Reliability (issue #14): staging outside DVC outputs, orphaned stages, the machine failing
(disk, memory, a corrupt or unreachable store), secrets in tracking URIs.

Real processes throughout: stages run as subprocesses, listeners are real sockets on 127.0.0.1,
and every process a test starts is stopped by its PID.
"""

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml
from conftest import ROOT, TASK_NAMES, free_port, pipeline_env, runs_in, scratch, stage
from test_hardening import TRAIN

from backprop.lab.failures import environment_message
from backprop.lab.outputs import STAGING_DIR, remove_stale_staging, staged_outputs
from backprop.lab.processes import pid_alive
from backprop.lab.store import redact, tracking_uri

OUTPUTS = ("models", "metrics", "plots", "runs")


# ---- pure parts: seconds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("postgresql://mlflow:s3cret@db.internal/mlflow", "postgresql://mlflow:***@db.internal/mlflow"),
        ("https://t0ken@mlflow.internal/x?sig=abc&v=2", "https://***@mlflow.internal/x?sig=***&v=***"),
        ("http://mlflow.internal:5000", "http://mlflow.internal:5000"),
        ("sqlite:////repo/mlflow.db", "sqlite:////repo/mlflow.db"),
    ],
)
def test_redact_hides_passwords_and_tokens(uri, shown):
    assert redact(uri) == shown


@pytest.mark.parametrize(
    "uri, resolved",
    [
        ("sqlite:///store.db", "sqlite:////repo/store.db"),
        ("sqlite:////elsewhere/store.db", "sqlite:////elsewhere/store.db"),
        ("file:mlruns", "file:///repo/mlruns"),
        ("./mlruns", "/repo/mlruns"),
        ("http://h:5000", "http://h:5000"),
    ],
)
def test_relative_store_uris_resolve_at_the_project_root(monkeypatch, uri, resolved):
    monkeypatch.setenv("DVC_ROOT", "/repo")  # what DVC sets inside its temporary copies
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert tracking_uri() == resolved


def test_environment_failures_are_one_line_naming_the_thing():
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "metrics/regression.json")
    assert environment_message(full) == "metrics/regression.json: no space left on the device (disk full)"
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS), "/store/mlartifacts/1")
    assert environment_message(read_only) == "/store/mlartifacts/1: read-only file system"
    assert environment_message(MemoryError("Unable to allocate 9 GiB")).startswith("out of memory: Unable")
    assert environment_message(KeyError("x")) is None  # a bug keeps its traceback


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_staging_of_dead_stages_is_removed(tmp_path):
    root = tmp_path / STAGING_DIR
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for pid in (dead_pid(), live.pid):
            (root / str(pid) / "0").mkdir(parents=True)
            (root / str(pid) / "0" / "regression.json").write_text("{}")
        remove_stale_staging(root)
        assert [p.name for p in root.iterdir()] == [str(live.pid)]
    finally:
        live.kill()
        live.wait()


def test_outputs_are_staged_outside_their_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with staged_outputs() as outputs:
        temporary = outputs.path("metrics/regression.json")
        temporary.write_text("{}")
        assert temporary.is_relative_to(tmp_path / STAGING_DIR / str(os.getpid()))
        assert temporary.name == "regression.json" and not (tmp_path / "metrics").exists()
    assert (tmp_path / "metrics" / "regression.json").read_text() == "{}"
    assert not (tmp_path / STAGING_DIR).exists()


# ---- real stages, real signals ---------------------------------------------------------------------


def wait_for_run(folder, task: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r.info.status == "RUNNING" and r.data.tags.get("task") == task for r in runs_in(folder)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no RUNNING {task} run within {timeout} s")


def start_train(folder, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *TRAIN],
        cwd=folder,
        env=pipeline_env(PYTHONPATH=str(ROOT)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


@pytest.mark.e2e
def test_after_kill_9_no_staging_is_left_under_outputs_and_the_next_run_cleans_up(tmp_path, prepared):
    # Regression trains quickly, so its outputs are staged; classification runs until killed.
    slow = {"classification": {"lr": 0.3, "epochs": 10_000_000}}
    folder = scratch(tmp_path, prepared, overrides=slow)
    process = start_train(folder)
    try:
        for task in TASK_NAMES:  # the stage opens one run per task, one after another
            wait_for_run(folder, task)
        staged = folder / STAGING_DIR / str(process.pid)
        deadline = time.monotonic() + 60  # both tasks train at once: wait for regression's staged outputs
        while time.monotonic() < deadline and not (staged.is_dir() and any(staged.rglob("history.csv"))):
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert not any((folder / name).exists() for name in OUTPUTS), "staging inside a declared output"
    assert (folder / STAGING_DIR / str(process.pid)).is_dir()
    assert "RUNNING" in [r.info.status for r in runs_in(folder)]

    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["train"]["overrides"] = {}
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = stage(folder, TRAIN)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (folder / STAGING_DIR).exists()
    assert not [p for name in OUTPUTS for p in (folder / name).rglob(".*")]
    killed = [r for r in runs_in(folder) if r.data.tags.get("pid") == str(process.pid) and "fold" not in r.data.tags]
    # Every task's run stays open until the stage ends, so the kill leaves them RUNNING: FAILED now.
    assert sorted(r.info.status for r in killed) == ["FAILED"] * len(TASK_NAMES)


PARENT = """
import subprocess, sys, time
child = subprocess.Popen(sys.argv[1:])
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.e2e
def test_a_stage_whose_parent_dies_ends_itself(tmp_path, prepared):
    folder = scratch(tmp_path, prepared, epochs=10_000_000)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, sys.executable, *TRAIN],
        cwd=folder,
        env=pipeline_env(PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    child = int(parent.stdout.readline())
    try:
        for task in TASK_NAMES:  # the stage opens one run per task, one after another
            wait_for_run(folder, task)
        parent.send_signal(signal.SIGTERM)  # dvc ended by its user or its CI job
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and pid_alive(child):
            time.sleep(0.1)
        assert not pid_alive(child), "the stage trains on as an orphan"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()
    assert [r.info.status for r in runs_in(folder)] == ["KILLED"] * len(TASK_NAMES)  # every task trains at once
    assert not (folder / STAGING_DIR).exists()


# ---- the machine failing -----------------------------------------------------------------------------


def one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


@pytest.mark.e2e
@pytest.mark.parametrize(
    "path, message",
    [("/dev/full", "/dev/full: no space left on the device (disk full)"), ("/sys/kernel/notes", "permission denied")],
)
def test_a_full_or_unwritable_file_is_one_line(tmp_path, path, message):
    # The benchmarks' timing file is the one file a stage appends to by a path it is given: a
    # real device that is always full, a real kernel file that root cannot write.
    if not os.path.exists(path):
        pytest.skip(f"{path} is not on this system")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True)
    result = stage(tmp_path, ["-m", "stages.prepare", "--out", "out"], BACKPROP_TIMINGS=path)
    assert result.returncode == 2
    assert message in one_error_line(result.stderr)


@pytest.mark.e2e
def test_out_of_memory_is_one_line_and_the_run_fails(tmp_path, prepared):
    import resource

    folder = scratch(tmp_path, prepared, hidden=[3_000_000], epochs=5)

    def limit_memory():  # a real allocation failure, without pressing on the machine
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    result = subprocess.run(
        [sys.executable, *TRAIN],
        cwd=folder,
        env=pipeline_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_memory,
    )
    assert result.returncode == 2
    assert one_error_line(result.stderr).startswith("error: out of memory: Unable to allocate")
    # The stage times a few epochs before any run starts, so the allocation fails there: no run at all.
    assert "RUNNING" not in [r.info.status for r in runs_in(folder)]


@pytest.mark.e2e
def test_a_corrupt_store_is_one_line_that_says_how_to_recover(tmp_path, prepared):
    folder = scratch(tmp_path, prepared)
    (folder / "mlflow.db").write_bytes(b"these are not the pages of a SQLite database\n" * 100)
    result = stage(folder, TRAIN)
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "mlflow.db is corrupt" in line and "mlflow.db.broken" in line and ".recover" in line
    assert (folder / "mlflow.db").read_bytes().startswith(b"these are not"), "the store was touched"
    assert not any((folder / name).exists() for name in OUTPUTS)


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers: a hung tracking server."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.socket.accept()[0])
            except OSError:
                return

    def close(self):
        self.socket.close()
        for connection in self.held:
            connection.close()


@pytest.mark.e2e
@pytest.mark.parametrize("server", ["silent", "closed"])
def test_an_unreachable_tracking_server_is_one_line_within_30_s(tmp_path, prepared, server):
    silent = SilentServer() if server == "silent" else None
    port = silent.port if silent else free_port()
    folder = scratch(tmp_path, prepared)
    started = time.monotonic()
    try:
        result = stage(folder, TRAIN, MLFLOW_TRACKING_URI=f"http://alice:s3cret@127.0.0.1:{port}")
    finally:
        if silent:
            silent.close()
    elapsed = time.monotonic() - started
    assert result.returncode == 2 and elapsed < 30
    line = one_error_line(result.stderr)
    assert f"alice:***@127.0.0.1:{port}" in line and "s3cret" not in result.stderr + result.stdout
    assert not any((folder / name).exists() for name in OUTPUTS)


@pytest.mark.e2e
def test_a_password_in_the_tracking_uri_is_never_written(tmp_path, prepared, tracking_server):
    url, _ = tracking_server
    secret_url = url.replace("http://", "http://alice:s3cret@")
    (tmp_path / "work").mkdir()
    folder = scratch(tmp_path / "work", prepared)
    result = stage(folder, TRAIN, MLFLOW_TRACKING_URI=secret_url)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((folder / "runs" / "train.json").read_text())
    assert record["tracking_uri"] == url.replace("http://", "http://alice:***@")
    leaks = [
        p
        for p in folder.rglob("*")
        if p.is_file() and p.stat().st_size < 10**6 and "s3cret" in p.read_text(errors="replace")
    ]
    assert not leaks and "s3cret" not in result.stdout + result.stderr, (leaks, result.stdout, result.stderr)
    from mlflow import MlflowClient

    client = MlflowClient(url)
    runs = client.search_runs([client.get_experiment_by_name("backprop-lab").experiment_id])
    assert runs and not any("s3cret" in json.dumps(r.data.tags | r.data.params) for r in runs)
