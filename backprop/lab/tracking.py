"""MLflow runs: a ``Tracker`` whose runs always end, batched logging and the registered model.
What each kind of run logs: ``run_metrics.py``; where a run comes from (git, DVC, a version's
tags): ``provenance.py``; where the store is and what its failures mean: ``store.py``; the stage
digest that finds a run: ``digests.py``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from backprop.lab.counters import COSTS, spent_in_mlflow
from backprop.lab.digests import DIGEST_TAG, stage_digest
from backprop.lab.failures import environment_message
from backprop.lab.outputs import naming
from backprop.lab.processes import at_stage_exit, defer_interrupts, pid_alive, resume_interrupts
from backprop.lab.provenance import as_text, dvc_tags, flatten, head_commit, pipeline_key, pipeline_label
from backprop.lab.store import (
    ARTIFACTS_DIR,
    HTTP_DEFAULTS,
    check_reachable,
    check_store_file,
    fast_sqlite,
    project_root,
    quiet_mlflow,
    redact,
    shareable_uri,
    store_lock,
    tracking_uri,
)

PIPELINE_TAG = "backprop.pipeline"  # the tag that finds a pipeline run's grouping run
# A run's name carries the pipeline it belongs to, which no versioned file may hold (a DVC
# experiment's name is not a dependency of any stage): versioned files find a run by this tag,
# its name without the pipeline.
KEY_TAG = "run_key"
# MLflow 3's UI opens an experiment without this tag in its GenAI view (traces, no runs).
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
RESERVE_BYTES = 1 << 20  # disk kept free beside a SQLite store (mlflow.db.reserve) to end runs on a full disk
HOST = socket.gethostname()

unended: list = []  # (tracker, run id, status) of runs a failing stage could not end at once


def end_unended_runs() -> None:
    """A second try at ending the runs ``Tracker.run`` could not end, at the stage's exit; if the
    store still refuses, say so in one line (the next stage ends them: their process is gone)."""
    while unended:
        tracker, run_id, status = unended.pop()
        tracker.free_reserve()  # the next stage to open the store makes it again
        tracker.reopen()
        try:
            tracker._call("set_terminated", run_id, status)
        except Exception as error:
            print(
                f"warning: the MLflow run {run_id[:8]} is still RUNNING ({environment_message(error) or error}); "
                f"the next stage marks it {status}",
                file=sys.stderr,
            )


at_stage_exit(end_unended_runs)  # once the staged outputs are gone: space to end them in


class Tracker:
    """One MLflow experiment in one store, used through MlflowClient only (no global state)."""

    def __init__(self, experiment: str, uri: str | None = None):
        self.store_uri = uri or tracking_uri()
        # What versioned files, messages and tags may show: no secret, no path of this machine.
        self.uri = redact(shareable_uri(self.store_uri))
        self.local = self.store_uri.startswith("sqlite:")
        self.experiment = experiment
        self._pipeline: str | None = None
        self._created: dict[str, tuple[str, str]] = {}  # run id -> (run name, stage digest)
        self._models: dict[str, str] = {}  # logged model id -> its registered name
        self._lock_path = Path(self.store_uri.removeprefix("sqlite:///") + ".lock") if self.local else None
        if self.local:
            from sqlalchemy import event
            from sqlalchemy.engine import Engine

            if not event.contains(Engine, "connect", fast_sqlite):
                event.listen(Engine, "connect", fast_sqlite)
        if urlsplit(self.store_uri).scheme in ("http", "https"):
            for name, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
            # MLflow prints a link per run ended on a server (hundreds per sweep, burying the stage's
            # own line), with the URI as given, password and all.
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
            check_reachable(self.store_uri)
        if self.local:
            check_store_file(Path(self.store_uri.removeprefix("sqlite:///")))
        with self._locked(), spent_in_mlflow(opening=True):
            self._reserve_space()
            # The first touch creates the SQLite schema: serialised, so that several queue workers
            # starting on a new store do not race through MLflow's migrations.
            from mlflow import MlflowClient  # MLflow takes seconds to import: the fits start first

            quiet_mlflow()
            self.client = MlflowClient(self.store_uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is not None:
                self.experiment_id = found.experiment_id
            else:
                location = (project_root() / ARTIFACTS_DIR).as_uri() if self.local else None
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=location, tags={KIND_TAG: KIND}
                )
            self._set_kind(found)
        self._end_orphaned_runs()

    def _set_kind(self, found) -> None:
        """The experiment kind on a store made before the project set it, or inferred by the UI; a
        kind someone chose stays."""
        kind = found.tags.get(KIND_TAG, "") if found is not None else KIND
        if kind in ("", "no_inferred_type") or kind.endswith("_inferred"):
            self.client.set_experiment_tag(self.experiment_id, KIND_TAG, KIND)

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
                self._call("set_terminated", run.info.run_id, "FAILED")

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return store_lock(self._lock_path)

    def _call(self, method: str, *args, **kwargs):
        with spent_in_mlflow(), self._locked():
            return getattr(self.client, method)(*args, **kwargs)

    @functools.cached_property
    def label(self) -> str:
        return pipeline_label()

    def pipeline_run(self) -> str:
        """The run that groups every stage of one pipeline run: one per DVC experiment, or, for a
        plain `dvc repro`, one per code and params (``pipeline_key``). Found by its tag, else
        created (already FINISHED: it holds no data, and no stage has to remember to end it)."""
        if self._pipeline is None:
            key, name = pipeline_key()
            deferred = defer_interrupts()  # created and ended at once: never left RUNNING
            with spent_in_mlflow(), self._locked(), contextlib.ExitStack() as resume:
                resume.callback(resume_interrupts, deferred)
                # two stages starting at once must not make two
                found = self.client.search_runs(
                    [self.experiment_id], filter_string=f"tags.`{PIPELINE_TAG}` = '{key}'", max_results=1
                )
                if found:
                    self._pipeline = found[0].info.run_id
                else:
                    tags = {PIPELINE_TAG: key, "mlflow.source.git.commit": head_commit()} | dvc_tags()
                    tags[KEY_TAG] = name
                    self._pipeline = self.client.create_run(self.experiment_id, tags=tags, run_name=name).info.run_id
                    self.client.set_terminated(self._pipeline, "FINISHED")
        return self._pipeline

    @contextlib.contextmanager
    def run(self, name: str, tags: Mapping, parent_id: str | None = None) -> Iterator[str]:
        """A run that ends FINISHED, FAILED on an error, KILLED on Ctrl-C or SIGTERM: never RUNNING.
        A stage's own runs (no ``parent_id``) nest under the pipeline run. ``name`` is what
        versioned files find it by (tag ``run_key``); the run's name adds the pipeline's label."""
        owner = {"host": HOST, "pid": str(os.getpid())}  # lets a later stage end it if this process dies
        all_tags = owner | {key: as_text(value) for key, value in tags.items()}
        all_tags |= {"mlflow.parentRunId": parent_id or self.pipeline_run(), KEY_TAG: name}
        if "stage" in all_tags:
            all_tags[DIGEST_TAG] = stage_digest(all_tags["stage"])
        # Ctrl-C or SIGTERM (which a stage turns into Ctrl-C) inside the call that creates the run,
        # after its row is written, would leave it RUNNING: they wait, and are raised inside the try.
        deferred = defer_interrupts()
        try:
            run = self._call("create_run", self.experiment_id, tags=all_tags, run_name=f"{name} ({self.label})")
        except BaseException:
            resume_interrupts(deferred)
            raise
        COSTS.runs += 1
        run_id = run.info.run_id
        self._created[run_id] = (name, all_tags.get(DIGEST_TAG, ""))
        try:
            resume_interrupts(deferred)
            yield run_id
        except KeyboardInterrupt:
            self._end_failed(run_id, "KILLED")
            raise
        except BaseException:
            self._end_failed(run_id, "FAILED")
            raise
        deferred = defer_interrupts()
        try:
            self._call("set_terminated", run_id, "FINISHED")
        finally:
            resume_interrupts(deferred)

    def _reserve_space(self) -> None:
        """Keep ``RESERVE_BYTES`` of the store's disk in a file beside it, so that a stage that
        fills the disk can free them and still end its runs FAILED (``end_unended_runs``)."""
        if self._lock_path is None:
            return
        reserve = self._lock_path.with_suffix(".reserve")
        if reserve.is_file() and reserve.stat().st_size == RESERVE_BYTES:
            return
        try:
            with open(reserve, "wb") as handle:
                handle.write(bytes(RESERVE_BYTES))
        except OSError:  # a disk already full (or read-only): no reserve, and no error for it
            with contextlib.suppress(OSError):
                reserve.unlink()

    def free_reserve(self) -> None:
        if self._lock_path is not None:
            with contextlib.suppress(OSError):
                self._lock_path.with_suffix(".reserve").unlink()

    def reopen(self) -> None:
        """Close the store's connections, so the next call opens new ones. For SQLite, the last
        close folds the write-ahead log into the store and deletes it: after a full disk, that
        log holds the space the failed writes took."""
        store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
        engine = getattr(store, "engine", None)
        if engine is not None:
            with contextlib.suppress(Exception):
                engine.dispose()

    def _end_failed(self, run_id: str, status: str) -> None:
        """End a run whose stage is failing. The store may be failing too (a full disk): then the
        run waits in ``unended`` for ``end_unended_runs``, once the stage has removed its staged
        outputs, and the stage's own error is the one reported."""
        try:
            self._call("set_terminated", run_id, status)
        except Exception:
            unended.append((self, run_id, status))

    def log(
        self,
        run_id: str,
        *,
        params: Mapping | None = None,
        metrics: Sequence[tuple[str, float, int]] = (),
        tags: Mapping | None = None,
        model_id: str | None = None,
    ) -> None:
        """Params, tags and (key, value, step) metrics in one ``log_batch`` (the client splits it
        where MLflow's limits per call require); with ``model_id``, the metrics are also the
        logged model's."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self._call(
            "log_batch",
            run_id,
            metrics=[Metric(k, float(v), now, int(step), model_id=model_id) for k, v, step in metrics],
            params=[Param(k, v) for k, v in flatten(params or {}).items()],
            tags=[RunTag(k, as_text(v)) for k, v in (tags or {}).items()],
        )

    def record(
        self,
        name: str,
        tags: Mapping,
        *,
        parent_id: str,
        params: Mapping,
        metrics: list[tuple[str, float, int]],
    ) -> str:
        """A run for a fit that has already finished: created, logged in one batch and ended, so
        it is never left RUNNING. Three calls, whatever the fit logs."""
        with self.run(name, tags, parent_id=parent_id) as run_id:
            self.log(run_id, params=params, metrics=metrics)
        return run_id

    def log_dataset(self, run_id: str, schema: Mapping, context: str = "training") -> None:
        """The run's input table as an MLflow dataset: the CSV's path in the repository, its
        sha256 as the digest, its columns and rows (from the prepare stage's schema.json)."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        columns = {"mlflow_colspec": [{"type": "double", "name": name} for name in schema["features"]]}
        dataset = Dataset(
            name=Path(schema["source"]).stem,
            digest=schema["sha256"][:20],
            source_type="local",
            source=json.dumps({"uri": schema["source"]}),
            schema=json.dumps(columns),
            profile=json.dumps({"num_rows": schema["rows"], "target": schema["target"]}),
        )
        self._call("log_inputs", run_id, datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context", context)])])

    def log_artifacts(self, run_id: str, paths: list[str | Path], artifact_path: str | None = None) -> None:
        store = project_root() / ARTIFACTS_DIR if self.local else "the MLflow artifact store"
        for path in paths:
            with naming(f"{store} (copying {Path(path).name} into it)"):  # a full disk names no file
                self._call("log_artifact", run_id, str(path), artifact_path)

    def log_model(
        self,
        run_id: str,
        model_dir: str | Path,
        *,
        step: int,
        registered_name: str,
        champion: bool,
        description: str = "",
        version_tags: Mapping | None = None,
    ):
        """The model saved in ``model_dir`` as a LoggedModel of ``run_id``, registered as a new
        version of ``registered_name`` with ``description`` and ``version_tags``; with ``champion``,
        the alias ``champion`` moves to that version. Returns (model id, version). Metrics join the
        LoggedModel only when logged with its id (``log``): MLflow would otherwise link every
        later metric of this process to it."""
        import mlflow.pyfunc
        from mlflow.exceptions import MlflowException
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri

        from backprop.lab.pyfunc import model_spec

        # log_model works on the active run of the fluent API, and the registry resolves a
        # models:/ source through the global store: both pointed at this store for this call only
        # (the pinned MLflow has no client-level log_model). The client is used directly inside:
        # _call would take the file lock a second time.
        with spent_in_mlflow(), self._locked(), _use_tracking_uri(self.store_uri):
            with mlflow.start_run(run_id=run_id):
                info = mlflow.pyfunc.log_model(name=registered_name, step=step, **model_spec(model_dir))
            mlflow.clear_active_model()
            try:
                self.client.create_registered_model(registered_name)
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":  # as it does after the first run
                    raise
            version = self.client.create_model_version(
                registered_name,
                info.model_uri,
                run_id=run_id,
                model_id=info.model_id,
                tags={key: as_text(value) for key, value in (version_tags or {}).items()},
                description=description,
            ).version
            if champion:
                self.client.set_registered_model_alias(registered_name, "champion", version)
        self._models[info.model_id] = registered_name
        return info.model_id, version

    def run_filter(self, run_id: str) -> str:
        """The filter string (``mlflow.search_runs``, the UI's search box) that finds a run this
        tracker created, and runs of the same stage with the same code, params and data."""
        name, digest = self._created[run_id]
        return search_filter(name, digest)

    def runs_file(self, **entries) -> dict:
        """What a stage writes to its versioned runs file: the store and experiment, and ``entries``
        with every run id this tracker created replaced by its filter string and every logged model
        id by its registered name. No id, no time: the same code, params and data give the same file."""

        def searchable(value):
            if isinstance(value, str):
                return self.run_filter(value) if value in self._created else self._models.get(value, value)
            if isinstance(value, Mapping):
                return {key: searchable(item) for key, item in value.items()}
            if isinstance(value, list | tuple):
                return [searchable(item) for item in value]
            return value

        return {"tracking_uri": self.uri, "experiment": self.experiment} | searchable(entries)

    def find_run(self, filter_string: str) -> str | None:
        """The id of the latest run that ``filter_string`` finds, or None (a store reset since)."""
        found = self._call(
            "search_runs",
            [self.experiment_id],
            filter_string=filter_string,
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return found[0].info.run_id if found else None


def search_filter(run_key: str, digest: str) -> str:
    """The MLflow filter string for the runs keyed ``run_key`` (their name without the pipeline)
    whose stage had ``digest``."""
    quoted = run_key.replace("'", "\\'")
    return f"tags.{KEY_TAG} = '{quoted}' and tags.{DIGEST_TAG} = '{digest}'"
