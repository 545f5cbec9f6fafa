"""Everything MLflow: where the store is, runs that always end, batched logging, the model.

The store: ``MLFLOW_TRACKING_URI`` when set (a team's tracking server), otherwise
``sqlite:///<project root>/mlflow.db`` with artifacts in ``<project root>/mlartifacts``. The project
root is ``DVC_ROOT``, which DVC sets to the user's repository also inside the temporary copies
where ``dvc exp run --queue``/``--temp`` execute, so no run is left behind in a copy that DVC
deletes.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import math
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException

from backprop.lab.io import MachineError, pid_alive

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
BATCH_LIMIT = 1000  # MLflow's cap on entities per log_batch call
PARAMS_LIMIT = 100  # and on params/tags per call
HOST = socket.gethostname()

# Seconds this process spent inside MLflow calls; benchmarks/pipeline.py reports it per stage.
time_in_mlflow = 0.0


def project_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri() -> str:
    """The store: MLFLOW_TRACKING_URI with a relative sqlite/file path anchored at the project
    root (never inside a DVC temp copy that is deleted afterwards), or the project's SQLite file."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{project_root() / DB_NAME}"
    scheme, _, rest = uri.partition(":")
    if scheme == "sqlite" and rest.startswith("///") and not rest.startswith("////") and rest != "///:memory:":
        return f"sqlite:///{project_root() / rest[3:]}"
    if scheme == "file" and not rest.startswith("/"):
        return (project_root() / rest).as_uri()
    if not rest or len(scheme) == 1:  # no scheme (a Windows drive letter at most): a local path
        return str(project_root() / uri)
    return uri


def redact(uri: str) -> str:
    """The URI without secrets, for files, logs and tags: ``user:***@host``, query values ``***``."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}" if ":" in userinfo else f"***@{host}"
    query = "&".join(f"{key}=***" for key, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def secrets(uri: str) -> list[str]:
    """The parts of ``uri`` that ``redact`` hides."""
    parts = urlsplit(uri)
    found = [value for _, value in parse_qsl(parts.query)]
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found.append(userinfo.split(":", 1)[1] if ":" in userinfo else userinfo)
    return [secret for secret in found if len(secret) >= 3]  # "a" or "1" would blank out half a line


# MLflow's own defaults wait up to 120 s per request and retry 7 times with backoff, minutes
# in all before an unreachable server is reported; a stage should say so within seconds.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
}
REACH_TIMEOUT = 5  # seconds for the server to accept and answer /health


def check_reachable(uri: str, timeout: float = REACH_TIMEOUT) -> None:
    """Raise MachineError naming the host (no password) unless the server answers at all."""
    parts = urlsplit(uri)
    base = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path.rstrip("/"), "", ""))
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:  # it answered, if only to refuse: the server is there
        return
    except (OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise MachineError(
            f"the MLflow tracking server {redact(uri)} did not answer within {timeout} s ({reason}); "
            f"check MLFLOW_TRACKING_URI or unset it to use the project's own store"
        ) from None


def git_commit(cwd: str | Path = ".") -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def downsample_steps(n: int, most: int) -> np.ndarray:
    """At most ``most`` evenly spread epochs, always the first and the last."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(int))


def flatten(values: Mapping, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = str(list(value) if isinstance(value, tuple) else value)
    return flat


class Tracker:
    """One MLflow experiment in one store, used through MlflowClient only (no global state)."""

    def __init__(self, experiment: str, uri: str | None = None):
        self._uri = uri or tracking_uri()
        self.uri = redact(self._uri)  # what files, messages and tags may show
        self.local = self._uri.startswith("sqlite:")
        self._lock_path = Path(self._uri.removeprefix("sqlite:///") + ".lock") if self.local else None
        if urlsplit(self._uri).scheme in ("http", "https"):
            for name, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
            if secrets(self._uri):  # MLflow prints run links with the URI as given, password and all
                os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
            check_reachable(self._uri)
        with self._locked():
            # The first touch creates the SQLite schema: serialised, so that several queue workers
            # starting on a new store do not race through MLflow's migrations.
            self.client = MlflowClient(self._uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is not None:
                self.experiment_id = found.experiment_id
            else:
                location = (project_root() / ARTIFACTS_DIR).as_uri() if self.local else None
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        self._end_orphaned_runs()

    def _end_orphaned_runs(self) -> None:
        """Runs left RUNNING by a stage of this machine that was killed (SIGKILL, power loss):
        FAILED now. Only runs whose host is this one and whose process is gone are touched."""
        running = self._call(
            "search_runs",
            [self.experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.host = '{HOST}'",
            max_results=1000,
        )
        for run in running:
            pid = run.data.tags.get("pid", "")
            if pid.isdigit() and not pid_alive(int(pid)):
                self._call("set_terminated", run.info.run_id, RunStatus.to_string(RunStatus.FAILED))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._lock_path is None:
            yield
            return
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _call(self, method: str, *args, **kwargs):
        global time_in_mlflow
        started = time.perf_counter()
        try:
            with self._locked():
                return getattr(self.client, method)(*args, **kwargs)
        finally:
            time_in_mlflow += time.perf_counter() - started

    @contextlib.contextmanager
    def run(self, name: str, tags: Mapping[str, str], parent_id: str | None = None) -> Iterator[str]:
        """A run that ends FINISHED, FAILED on an error, KILLED on Ctrl-C or SIGTERM: never RUNNING."""
        owner = {"host": HOST, "pid": str(os.getpid())}  # lets a later stage end it if this process dies
        all_tags = owner | dict(tags) | ({"mlflow.parentRunId": parent_id} if parent_id else {})
        run = self._call("create_run", self.experiment_id, tags=all_tags, run_name=name)
        run_id = run.info.run_id
        try:
            yield run_id
        except KeyboardInterrupt:
            self._call("set_terminated", run_id, RunStatus.to_string(RunStatus.KILLED))
            raise
        except BaseException:
            self._call("set_terminated", run_id, RunStatus.to_string(RunStatus.FAILED))
            raise
        self._call("set_terminated", run_id, RunStatus.to_string(RunStatus.FINISHED))

    def log(
        self,
        run_id: str,
        *,
        params: Mapping | None = None,
        metrics: list[tuple[str, float, int]] = (),
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Params, tags and (key, value, step) metrics in as few log_batch calls as MLflow allows."""
        now = int(time.time() * 1000)
        params_list = [Param(k, v) for k, v in flatten(params or {}).items()]
        tags_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        metrics_list = [Metric(k, float(v), now, int(step)) for k, v, step in metrics]
        while params_list or tags_list or metrics_list:
            batch_params, params_list = params_list[:PARAMS_LIMIT], params_list[PARAMS_LIMIT:]
            batch_tags, tags_list = tags_list[:PARAMS_LIMIT], tags_list[PARAMS_LIMIT:]
            room = BATCH_LIMIT - len(batch_params) - len(batch_tags)
            batch_metrics, metrics_list = metrics_list[:room], metrics_list[room:]
            self._call("log_batch", run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags)

    def log_artifacts(self, run_id: str, paths: list[str | Path], artifact_path: str | None = None) -> None:
        for path in paths:
            self._call("log_artifact", run_id, str(path), artifact_path)

    def log_model(self, run_id: str, weights: str | Path, features: list[str], mean, std) -> None:
        """The network as an MLflow pyfunc model that takes the raw feature columns."""
        global time_in_mlflow
        import mlflow.pyfunc
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        from backprop.lab.pyfunc import requirements

        package = Path(__file__).resolve().parents[1]
        example = pd.DataFrame(mean[None, :] + std[None, :] * np.linspace(-1, 1, 3)[:, None], columns=features)
        signature = ModelSignature(
            inputs=Schema([ColSpec("double", name) for name in features]),
            outputs=Schema([ColSpec("double")]),
        )
        with tempfile.TemporaryDirectory() as scratch:
            scaler = Path(scratch) / "scaler.npz"
            np.savez(scaler, features=np.array(features), mean=mean, std=std)
            started = time.perf_counter()  # the upload below is timed by _call itself
            mlflow.pyfunc.save_model(
                path=Path(scratch) / "model",
                python_model=str(package / "lab" / "pyfunc_model.py"),
                artifacts={"weights": str(weights), "scaler": str(scaler)},
                code_paths=[str(package)],
                signature=signature,
                input_example=example,
                pip_requirements=requirements(),
            )
            time_in_mlflow += time.perf_counter() - started
            self._call("log_artifacts", run_id, str(Path(scratch) / "model"), "model")

    def run_status(self, run_id: str) -> str | None:
        try:
            return self.client.get_run(run_id).info.status
        except MlflowException:  # a store that was wiped since: there is no such run any more
            return None


def history_metrics(columns: Mapping[str, np.ndarray], most: int) -> list[tuple[str, float, int]]:
    """Per-epoch curves as (key, value, step), downsampled to ``most`` steps for the UI; the
    whole curve is logged as a CSV artifact beside it. Non-finite values are left out: MLflow
    charts cannot draw them, and the run's ``diverged`` tag says why the curve stops."""
    lengths = {len(values) for values in columns.values()}
    if not lengths:
        return []
    steps = downsample_steps(lengths.pop(), most)
    return [
        (key, float(values[step]), int(step))
        for key, values in columns.items()
        for step in steps
        if math.isfinite(values[step])
    ]


def final_metrics(scores: Mapping[str, Mapping[str, float]], step: int) -> list[tuple[str, float, int]]:
    """``{split: {metric: v}}`` as ``split_metric`` at ``step``, extending the per-epoch curves."""
    return [
        (f"{split}_{name}", value, step)
        for split, values in scores.items()
        for name, value in values.items()
        if math.isfinite(value)
    ]


def result_metrics(history, scores: Mapping[str, Mapping[str, float]], most: int) -> list[tuple[str, float, int]]:
    """What every training run logs: its curves, then its final scores one step after them."""
    return history_metrics(history.columns, most) + final_metrics(scores, step=history.epochs_run)


def run_tags(stage: str, **extra: str) -> dict[str, str]:
    commit = git_commit()
    tags = {
        "stage": os.environ.get("DVC_STAGE", stage),
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "mlflow.source.name": f"stages/{stage.split('@')[0]}.py",
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc_baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    return tags | {key: str(value) for key, value in extra.items()}
