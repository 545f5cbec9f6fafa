"""Time the whole default pipeline on a fresh clone, and each stage on each executor.
Writes benchmarks/results/pipeline.md.

    python benchmarks/pipeline.py      # a few minutes on 2 cores; needs dvc and dask on PATH (make bench)

1. `dvc repro` on a fresh clone with the default executor (one worker per core): the wall time
   a user waits, then a second `dvc repro` with nothing to do.
2. `dvc repro --force` with BACKPROP_WORKERS=1, and on a Dask cluster of two one-thread workers
   started here on 127.0.0.1: per stage, fits, fits per second and MLflow milliseconds per run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "pipeline.md"
TARGETS = {"repro_seconds": 30, "noop_seconds": 3, "mlflow_ms_per_run": 20, "speedup": 1.7}


def repro(clone: Path, *args: str, **env: str) -> tuple[float, list[dict]]:
    """Wall seconds of one `dvc repro` and the stages' own timing records."""
    timings = clone.parent / f"timings-{time.monotonic_ns()}.jsonl"
    environment = (
        os.environ
        | env
        | {
            "BACKPROP_TIMINGS": str(timings),
            "CI": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
    )
    environment.pop("MLFLOW_TRACKING_URI", None)
    started = time.perf_counter()
    subprocess.run(["dvc", "repro", *args], cwd=clone, env=environment, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in timings.read_text().splitlines()] if timings.exists() else []
    return seconds, records


@contextlib.contextmanager
def dask_cluster(workers: int = 2):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    processes = [
        subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet)
    ]
    try:
        time.sleep(3)
        for _ in range(workers):
            command = [dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard"]
            processes.append(subprocess.Popen([*command, "--host", "127.0.0.1"], **quiet))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        import psutil

        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
            process.kill()
            process.wait()


def by_stage(records: list[dict]) -> dict[str, dict]:
    return {record["stage"]: record for record in records}


def cell(record: dict | None) -> str:
    if not record or not record["fits"]:
        return "–"
    return f"{record['seconds']:.1f} s · {record['fits'] / record['seconds']:.1f} fits/s"


def mlflow_ms(record: dict) -> str:
    return f"{1000 * record['mlflow_seconds'] / record['runs']:.0f}" if record["runs"] else "–"


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        clone = Path(scratch) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        cold, local = repro(clone)
        # A fresh clone reproduces the committed outputs: nothing for git to show.
        changed = subprocess.run(
            ["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True
        ).stdout.split("\n")
        changed = [line for line in changed if line.strip()]
        store_after_one = sum(p.stat().st_size for p in clone.rglob("*") if p.is_file() and "mlflow.db" in p.name) / 1e6
        noop, _ = repro(clone)
        _, single = repro(clone, "--force", BACKPROP_WORKERS="1")
        with dask_cluster() as address:
            _, on_dask = repro(clone, "--force", DASK_SCHEDULER_ADDRESS=address)
        store_mb = sum(p.stat().st_size for p in clone.rglob("*") if p.is_file() and "mlflow.db" in p.name) / 1e6

    local_stages, single_stages, dask_stages = by_stage(local), by_stage(single), by_stage(on_dask)
    rows = []
    for name, record in local_stages.items():
        one = single_stages.get(name)
        speedup = one["seconds"] / record["seconds"] if one and record["fits"] else None
        rows.append(
            f"| `{name}` | {record['fits']} | {cell(one)} | {cell(record)} | "
            f"{f'{speedup:.2f}×' if speedup else '–'} | {cell(dask_stages.get(name))} | "
            f"{record['runs']} | {mlflow_ms(record)} |"
        )
    fitting = [name for name, record in local_stages.items() if record["fits"]]
    one_total = sum(single_stages[name]["seconds"] for name in fitting if name in single_stages)
    many_total = sum(local_stages[name]["seconds"] for name in fitting)
    runs = sum(r["runs"] for r in local)
    mlflow_total = sum(r["mlflow_seconds"] for r in local)
    per_run = 1000 * mlflow_total / runs if runs else float("nan")

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    cores = os.cpu_count()
    text = "\n".join(
        [
            "# Pipeline benchmark: the default params, per stage and per executor",
            "",
            f"Measured by `python benchmarks/pipeline.py` on {time.strftime('%Y-%m-%d')}: fresh clone, new MLflow "
            f"store, {cores} cores, Python {platform.python_version()}. Each stage's time is its `main()` "
            "(imports and DVC's bookkeeping excluded).",
            "",
            f"| stage | fits | 1 worker (`BACKPROP_WORKERS=1`) | {cores} local workers (default) | speed-up | "
            "Dask, 2 one-thread workers on 127.0.0.1 | MLflow runs | MLflow ms per run |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            "| target | measured | |",
            "| --- | --- | --- |",
            f"| whole `dvc repro`, fresh clone, default executor ≤ {TARGETS['repro_seconds']} s | {cold:.1f} s | "
            f"{verdict(cold <= TARGETS['repro_seconds'])} |",
            f"| no-op `dvc repro` ≤ {TARGETS['noop_seconds']} s | {noop:.1f} s | "
            f"{verdict(noop <= TARGETS['noop_seconds'])} |",
            f"| MLflow ≤ {TARGETS['mlflow_ms_per_run']} ms per run, amortised over the {runs} runs of a repro | "
            f"{per_run:.1f} ms | {verdict(per_run <= TARGETS['mlflow_ms_per_run'])} |",
            f"| fitting stages with {cores} workers ≥ {TARGETS['speedup']}× one worker | "
            f"{one_total:.1f} s → {many_total:.1f} s: {one_total / many_total:.2f}× | "
            f"{verdict(one_total / many_total >= TARGETS['speedup'])} |",
            "",
            f"The MLflow store after the first repro: {store_after_one:.1f} MB; after the three repros of this "
            f"benchmark: {store_mb:.1f} MB (`mlflow.db` and its write-ahead log).",
            "",
            "`git status` on the fresh clone after its `dvc repro`: "
            + (
                "clean (every committed output reproduced byte for byte)."
                if not changed
                else f"{len(changed)} changed: " + ", ".join(f"`{line[3:]}`" for line in changed[:10])
            ),
            "",
        ]
    )
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
