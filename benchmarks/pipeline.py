"""Time a whole `dvc repro` with the default params on a fresh clone, stage by stage, and how
much of each stage was MLflow. Writes benchmarks/results/pipeline.md.

    python benchmarks/pipeline.py      # about a minute on 2 cores; needs dvc on PATH (make bench)
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "pipeline.md"
BUDGET_SECONDS = 90


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        clone = Path(scratch) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        timings = Path(scratch) / "timings.jsonl"
        env = os.environ | {
            "BACKPROP_TIMINGS": str(timings),
            "CI": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        started = time.perf_counter()
        subprocess.run(["dvc", "repro"], cwd=clone, env=env, check=True, capture_output=True)
        total = time.perf_counter() - started
        stages = [json.loads(line) for line in timings.read_text().splitlines()]

    rows = [
        f"| `{s['stage']}` | {s['seconds']:.1f} s | {s['mlflow_seconds']:.1f} s | "
        f"{s['mlflow_seconds'] / s['seconds']:.0%} |"
        for s in stages
    ]
    inside = sum(s["seconds"] for s in stages)
    mlflow = sum(s["mlflow_seconds"] for s in stages)
    text = "\n".join(
        [
            "# Pipeline benchmark: one `dvc repro` with the default params",
            "",
            f"Measured by `python benchmarks/pipeline.py` on {time.strftime('%Y-%m-%d')}: fresh clone, new MLflow "
            f"store, {os.cpu_count()} cores, Python {platform.python_version()}.",
            "",
            "| stage | time in the stage's `main()` | of which MLflow calls | MLflow share |",
            "| --- | --- | --- | --- |",
            *rows,
            f"| **all stages** | {inside:.1f} s | {mlflow:.1f} s | {mlflow / inside:.0%} |",
            "",
            f"Whole `dvc repro`: **{total:.1f} s** (budget {BUDGET_SECONDS} s: "
            f"{'met' if total <= BUDGET_SECONDS else 'NOT met'}). The other {total - inside:.1f} s are Python "
            "start-up and imports of each stage (MLflow's import alone is about a second) and DVC's own "
            "bookkeeping (hashing, caching, the lock file).",
            "",
            "MLflow calls are batched (`log_batch`): per run one call for params, one or two for the "
            "curves (thinned to `tracking.max_logged_steps` points per metric) and final scores, one to "
            "end the run, plus artifacts; the `train` stage also saves each network as a pyfunc model.",
            "",
        ]
    )
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
