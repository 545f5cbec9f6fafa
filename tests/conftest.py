import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

ROOT = Path(__file__).resolve().parents[1]


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
    env.update(CI="1", MLFLOW_DISABLE_TELEMETRY="true", DVC_NO_ANALYTICS="1", DO_NOT_TRACK="1")
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


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory):
    """A fresh copy with tiny params after one `dvc repro`."""
    repo = copy_repo(tmp_path_factory.mktemp("pipeline"), TINY)
    result = run(["dvc", "repro"], repo)
    # What the user saw, beside the repo (not in it), for the console checks.
    repro_log(repo).write_text(result.stdout + result.stderr)
    return repo


def repro_log(repo: Path) -> Path:
    return repo.parent / f"{repo.name}-repro.log"


# ---- one stage at a time: a scratch folder with params.yaml and prepared data ------------------


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("prepared")
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
    return folder / "out"


def scratch(tmp_path: Path, prepared: Path, **train_changes) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    deep_update(params, {"train": {**TINY["train"], **train_changes}, "tracking": TINY["tracking"]})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prepared").symlink_to(prepared, target_is_directory=True)
    return tmp_path


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
def mlflow_server(folder: Path, admin_password: str | None = None):
    """A real `mlflow server` on 127.0.0.1 with its store and artifacts in ``folder``: yields its URL
    and artifact root; stopped by its process group's id. With ``admin_password``, MLflow's
    basic-auth app guards it, its one user ``admin`` with that password."""
    port = free_port()
    auth, env = [], pipeline_env()
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
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.fixture
def tracking_server(tmp_path):
    with mlflow_server(tmp_path) as served:
        yield served
