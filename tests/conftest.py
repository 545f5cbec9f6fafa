import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from backprop.lab import TELEMETRY_OFF  # importing it turns telemetry off in this process

ROOT = Path(__file__).resolve().parents[1]
# The tasks of the project's params.yaml (every key of `data` but the protocol's), which scratch folders train.
TASK_NAMES = [
    name for name, spec in yaml.safe_load((ROOT / "params.yaml").read_text())["data"].items() if isinstance(spec, dict)
]


# `make test` hands whole test files to its workers (xdist `--dist loadfile
# --no-loadscope-reorder`) in collection order, each worker taking the next file when it is free:
# the longest files first, so that the workers end together (longest-processing-time first; seconds
# of tests from `--durations=0`, 2026-12-06). The rest follow in pytest-randomly's order, and
# inside every file the tests stay shuffled. test_tracking_server.py reproduces its own tiny
# pipeline, so it runs beside `tiny_repo`'s repro, which the next file waits for.
LONGEST_FIRST = (
    "test_tracking_server.py",
    "test_pipeline.py",
    "test_dvc_views.py",
    "test_hardening.py",
    "test_shareable.py",
    "test_executor.py",
    "test_reliability.py",
    "test_reliability_3.py",
    "test_report.py",
    "test_control.py",
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: shuffled within a file


@pytest.fixture(scope="session")
def diabetes():
    """All 442 rows, features standardised, target unscaled: the reference hand-in's protocol."""
    frame = pd.read_csv(ROOT / "data" / "diabetes.csv")
    X = frame.drop(columns="progression").to_numpy(float)
    return (X - X.mean(axis=0)) / X.std(axis=0), frame["progression"].to_numpy(float)


# ---- end-to-end: a copy of this repo with tiny params ------------------------------------------

TINY = {
    "data": {"folds": 3, "control": {"generate": {"rows": 90}}},
    "train": {"hidden": [4], "epochs": 40, "patience": 0, "overrides": {"control": {"epochs": 40}}},
    "curves": {"points": 10, "first_epochs": 5},
    "sweep": {
        "lr": {"grid": {"lr": [0.01, 100000.0]}, "tasks": ["regression"]},
        "activation": {
            "grid": {"activation": ["sigmoid", "relu"], "lr": [0.01, 0.1]},
            "tasks": ["regression", "classification"],
        },
        "hidden": {
            "grid": {"hidden": [2, 4], "lr": [0.5]},
            "fixed": {"lr_unit": "limit"},
            "tasks": ["regression", "control"],
        },
        "capacity": {"grid": {"hidden": [2, 4]}, "fixed": {"epochs": 20, "patience": 0}, "tasks": ["regression"]},
        "loss": {
            "grid": {"loss": ["log_loss", "mse"], "lr": [0.3, 0.6]},
            "reach": {"val_accuracy": 0.9},
            "tasks": ["classification"],
        },
        "saturated": {
            "grid": {"loss": ["log_loss", "mse"], "lr": [0.3]},
            "fixed": {"start": "saturated", "epochs": 20, "patience": 0},
            "reach": {"train_accuracy": 0.9},
            "tasks": ["classification"],
        },
    },
    "tracking": {"max_logged_steps": {"train": 10, "sweep": 5}},
}


def pipeline_env(**extra):
    """The environment a user has after `source .venv/bin/activate`, minus anything that would
    point the copy at this checkout (an MLflow server, a DVC root)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_STAGE")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(CI="1", **TELEMETRY_OFF)
    return env | extra


def run(cmd, cwd, check=True, timeout=600, **env):
    result = subprocess.run(
        cmd,
        cwd=cwd,
        env=pipeline_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        shell=isinstance(cmd, str),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def deep_update(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "sweep":
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def copy_repo(dest: Path, params: dict | None = None) -> Path:
    """The tracked files of this checkout in a fresh git repo, as a clone would have them."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, files.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    if params is not None:
        values = yaml.safe_load((dest / "params.yaml").read_text())
        (dest / "params.yaml").write_text(yaml.safe_dump(deep_update(values, params), sort_keys=False))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run([*git, "commit", "-qm", "copy"], dest)
    return dest


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``name``, made by ``build`` once per test run. With pytest-xdist (``make test``)
    the workers share it: the first that needs it builds it while any other waits for it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory):
    """A fresh copy with tiny params after one `dvc repro`: the run's one whole pipeline run.

    Read-only: tests look at it (DVC's own scratch space, .dvc/tmp, is DVC's business); a test
    that changes files, params, the store or git takes ``tiny_copy``. The session's end checks
    that nothing changed, so no test can depend on another's side effects through it."""

    def reproduce(repo: Path) -> None:
        copy_repo(repo, TINY)
        result = run(["dvc", "repro"], repo)
        # What the user saw, beside the repo (not in it), for the console checks.
        repro_log(repo).write_text(result.stdout + result.stderr)
        repo.with_name("tiny-repo-snapshot.json").write_text(json.dumps(snapshot(repo)))

    repo = built_once(tmp_path_factory, "tiny-repo", reproduce)
    yield repo
    before, after = json.loads(repo.with_name("tiny-repo-snapshot.json").read_text()), snapshot(repo)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"tests changed the read-only tiny_repo (use tiny_copy): {changed[:20]}"


def repro_log(repo: Path) -> Path:
    return repo.parent / f"{repo.name}-repro.log"


# Not part of a repo's state: DVC's scratch space, interpreter caches, SQLite's companions of an
# open store and the lock readers take, and git's index, which `git status` refreshes.
SCRATCH = {".dvc/tmp", ".git/index", "mlflow.db-wal", "mlflow.db-shm", "mlflow.db.lock"}


def snapshot(repo: Path) -> dict[str, str]:
    """Every file's digest (a symlink's target), but scratch; and git's refs, experiments' too."""
    digests = {}
    for path in sorted(repo.rglob("*")):
        name = path.relative_to(repo).as_posix()
        if "__pycache__" in path.parts or any(name == s or name.startswith(f"{s}/") for s in SCRATCH):
            continue
        if path.is_symlink():
            digests[name] = f"-> {os.readlink(path)}"
        elif path.is_file():
            digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    digests["git refs"] = run(["git", "show-ref"], repo, check=False).stdout
    return digests


def copy_of(repo: Path, dest: Path) -> Path:
    """A copy of a reproduced repo, as its owner has it on another path: git, params, outputs and
    DVC's cache. Not its MLflow store: the store's experiment records its artifact folder by
    absolute path, so a copy would log into the original's; a run in the copy starts a new one."""

    def leave_out(folder: str, names: list[str]) -> set[str]:
        store = {n for n in names if n.startswith("mlflow.db") or n == "mlartifacts"} if folder == str(repo) else set()
        return store | ({"tmp"} if Path(folder).name == ".dvc" else set())

    shutil.copytree(repo, dest, symlinks=True, ignore=leave_out)
    return dest


@pytest.fixture
def tiny_copy(tiny_repo, tmp_path) -> Path:
    """This test's own copy of ``tiny_repo`` (without its store): change it at will."""
    return copy_of(tiny_repo, tmp_path / "repo")


# ---- one stage at a time: a scratch folder with params.yaml and prepared data ------------------


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its tables made and no run. Making one runs MLflow's migrations
    (seconds), which scratch folders and test servers skip; a new store's first use is tested where
    it matters (the pipeline copies, ``test_a_new_store_survives_concurrent_first_use``)."""

    def make(folder: Path) -> None:
        MlflowClient(f"sqlite:///{folder / 'migrated.db'}").search_experiments()
        with contextlib.closing(sqlite3.connect(folder / "migrated.db")) as db:
            db.execute(f"VACUUM INTO '{folder / 'mlflow.db'}'")  # one self-contained file, whatever the journal mode

    return built_once(tmp_path_factory, "empty-store", make) / "mlflow.db"


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, empty_store) -> Path:
    """The prepared data of this checkout's params.yaml, beside an empty store (``scratch``)."""

    def prepare(folder: Path) -> None:
        (folder / "params.yaml").write_text((ROOT / "params.yaml").read_text())
        (folder / "data").symlink_to(ROOT / "data", target_is_directory=True)
        result = subprocess.run(
            [sys.executable, "-m", "stages.prepare", "--out", str(folder / "out")],
            cwd=folder,
            env=pipeline_env(PYTHONPATH=str(ROOT)),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        shutil.copyfile(empty_store, folder / EMPTY_STORE)

    return built_once(tmp_path_factory, "prepared", prepare) / "out"


EMPTY_STORE = "empty-mlflow.db"  # beside the session's prepared data


def scratch(tmp_path: Path, prepared: Path, **train_changes) -> Path:
    """A folder to run one stage in: params.yaml with TINY's train settings and ``train_changes``,
    data/prepared linked to ``prepared``; with the session's prepared data, an empty MLflow store."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    deep_update(params, {"train": {**TINY["train"], **train_changes}, "tracking": TINY["tracking"]})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prepared").symlink_to(prepared, target_is_directory=True)
    if (prepared.parent / EMPTY_STORE).is_file():
        shutil.copyfile(prepared.parent / EMPTY_STORE, tmp_path / "mlflow.db")
    return tmp_path


def use_experiment(folder: Path, name: str) -> Path:
    """Point a scratch folder's stages at MLflow experiment ``name``: a test's own runs on a
    shared tracking server."""
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["tracking"]["experiment"] = name
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def call_stage(module: str, args: list[str], folder: Path, monkeypatch) -> None:
    """A stage's main() in this process, run in ``folder`` with command-line ``args``: bad input
    raises here the error that ``run_stage`` prints as its one line and exit 2 (a real
    subprocess checks that mapping once per kind of error). Seconds cheaper than a subprocess."""
    main = importlib.import_module(module).main
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "argv", [module, *args])
    main()


def with_sweeps(folder: Path, sweeps: dict) -> dict:
    """Give a scratch folder the sweep section ``sweeps`` (curves of 10 points) and each sweep's
    settings file, as the settings stage writes it; returns the params."""
    from backprop.lab.config import load_sweep, load_train

    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["sweep"], params["curves"] = sweeps, {"points": 10}
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    train, sweep = load_train(params), load_sweep(params)
    (folder / "settings").mkdir(exist_ok=True)
    for name, spec in sweep.specs.items():
        settings = {task: sweep.inherited(name, train, task) for task in spec.tasks}
        (folder / "settings" / f"{name}.json").write_text(json.dumps(settings))
    return params


def stage(folder: Path, args: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=folder,
        env=pipeline_env(PYTHONPATH=str(ROOT), **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def runs_in(folder: Path, *, with_pipeline_run: bool = False):
    """The runs in a scratch folder's store; without the pipeline run that only groups the others.
    Read under the store's lock, as the stages write it: a stage may be creating the store's
    tables right now, and two processes migrating one new SQLite file at once collide. No store
    yet means no runs (reading must not create one)."""
    if not (folder / "mlflow.db").exists():
        return []
    with open(folder / "mlflow.db.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("backprop-lab")
        runs = [] if experiment is None else client.search_runs([experiment.experiment_id])
    return [r for r in runs if with_pipeline_run or "backprop.pipeline" not in r.data.tags]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answers(url: str, server: subprocess.Popen, what: str, seconds: float = 90) -> None:
    """Poll ``url`` until it answers 200; fail with the server's last stderr if it dies or is late."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            stderr = server.stderr.read() if server.stderr else ""
            stderr = stderr.decode() if isinstance(stderr, bytes) else stderr
            raise AssertionError(f"{what} did not answer {url}: {stderr[-2000:]}")
        time.sleep(0.5)


def sigint_as_in_a_terminal():
    # A program started from a terminal gets SIGINT at its default (Ctrl-C interrupts). When the
    # tests themselves run as a background job, the shell has set SIGINT to "ignore", and children
    # inherit that; reset it so the program under test sees what a terminal user's would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def mlflow_server(folder: Path, store: Path | None = None, admin_password: str | None = None):
    """A real ``mlflow server`` on 127.0.0.1 with its store and artifacts in ``folder`` (its store
    a copy of ``store`` when given): yields its URL and artifact root; stopped by its process group.
    With ``admin_password``, MLflow's basic-auth app guards it, its one user ``admin`` with that
    password."""
    if store is not None:
        shutil.copyfile(store, folder / "server.db")
    port = free_port()
    # Not MLflow's job runner (six more processes, each importing MLflow, that poll for GenAI jobs
    # this project never submits): seconds of CPU per server that the tests would wait for.
    auth, env = [], pipeline_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    if admin_password is not None:
        config = folder / "basic_auth.ini"
        config.write_text(
            f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{folder / 'auth.db'}\n"
            "admin_username = admin\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        auth = ["--app-name", "basic-auth"]
        env |= {
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-test-only-csrf-key",
        }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            str(folder / "server-artifacts"),
            "--workers",
            "1",
            *auth,
        ],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/health", server, "mlflow server")
        yield url, folder / "server-artifacts"
    finally:
        stop(server)


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory, empty_store):
    """One ``mlflow_server`` per test module, on a copy of the empty store: (URL, artifact root).
    Tests in a module share it, so each logs to an experiment of its own (``use_experiment``) or
    checks only what holds whatever else the server has."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server"), empty_store) as served:
        yield served


def stop(server: subprocess.Popen, grace: float = 3) -> None:
    """End a server and its workers (its process group): SIGTERM, and SIGKILL past ``grace``
    seconds, which a server spends waiting for clients' idle connections to close."""
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def wait_for(condition, seconds: float, what: str, process: subprocess.Popen | None = None) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` when late, or when ``process`` ends first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process ended ({process.returncode}) first: {process.stderr.read()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class DaskCluster:
    """``dask scheduler`` and ``workers`` ``dask worker`` processes (one thread each) on
    127.0.0.1, as a user starts them; the workers import the project from this checkout, as an
    installed copy would. The one launcher of the tests and ``benchmarks/pipeline.py``:
    ``with DaskCluster(2) as cluster:`` uses ``cluster.address`` and stops every process by PID."""

    def __init__(self, workers: int = 2):
        port = free_port()
        self.address, self.count = f"tcp://127.0.0.1:{port}", workers
        self._dask = str(Path(sys.executable).parent / "dask")
        self._popen = {
            "env": pipeline_env(PYTHONPATH=str(ROOT)),
            "stdout": subprocess.DEVNULL,
            "stderr": subprocess.DEVNULL,
            "start_new_session": True,
        }
        self.scheduler = subprocess.Popen(
            [self._dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **self._popen
        )
        self.workers: list[subprocess.Popen] = []
        self._stopped: list[subprocess.Popen] = []
        try:
            wait_for(lambda: listening(port), 60, "the Dask scheduler", self.scheduler)
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> "DaskCluster":
        try:
            self.keep_workers()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def keep_workers(self) -> None:
        """``count`` live workers, and the scheduler knows no others: a test that killed one
        leaves the next test the cluster it would have had on its own."""
        from distributed import Client

        self._stopped += [w for w in self.workers if w.poll() is not None]
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < self.count:
            worker = [self._dask, "worker", self.address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard"]
            self.workers.append(subprocess.Popen([*worker, "--host", "127.0.0.1"], **self._popen))
        with Client(self.address, timeout="30s") as client:
            wait_for(lambda: len(client.scheduler_info()["workers"]) == self.count, 60, f"{self.count} Dask workers")

    def stop(self) -> None:
        import psutil

        for process in [*self.workers, *self._stopped, self.scheduler]:
            with contextlib.suppress(psutil.NoSuchProcess):
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
            process.kill()
            process.wait(timeout=30)
