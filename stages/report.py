"""Assemble the answer: derivation, numbers, figures, conclusions, provenance (dvc stage `report`)."""

import argparse
import json
import os
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path

import pandas as pd

from backprop.lab.config import load_kinds, load_sweep, load_train, read_params
from backprop.lab.digests import DIGEST_TAG, stage_digest
from backprop.lab.outputs import staged_outputs
from backprop.lab.protocol import overlap_ratio
from backprop.lab.report import ReportInputs, build, render_html, render_markdown
from backprop.lab.stage_run import run_stage
from backprop.lab.store import redact

PACKAGES = ("numpy", "pandas", "matplotlib", "mlflow", "dvc", "scikit-learn", "Jinja2")


def source_changed() -> bool:
    """Do the code or params differ from the commit (outputs DVC rewrites do not count)? Said on
    the console only: the report holds no commit, so that a clone reproduces it byte for byte."""
    result = subprocess.run(
        ["git", "status", "--porcelain", "--", "backprop", "stages", "params.yaml", "dvc.yaml"],
        capture_output=True,
        text=True,
        check=False,
    )
    return bool(result.stdout.strip())


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--plots", required=True)
    parser.add_argument("--sweeps", required=True)
    parser.add_argument("--runs", required=True)
    parser.add_argument("--figures", required=True)
    parser.add_argument("--out", required=True, help="folder for report.md and report.html")
    args = parser.parse_args()

    params_text = Path("params.yaml").read_text()
    params = read_params()
    train, kinds = load_train(params), load_kinds(params)
    runs = Path(args.runs)
    train_runs = read_json(runs / "train.json")
    sweep = load_sweep(params)
    summaries = {name: pd.read_csv(Path(args.sweeps) / name / "summary.csv") for name in sweep.specs}
    sweep_runs = {}
    for name in sweep.specs:
        record = read_json(runs / f"sweep_{name}.json")
        sweep_runs[name] = (record["parent"], len(record["children"]))  # filter strings, not ids
    baselines = read_json(Path(args.metrics) / "baselines.json")
    schemas = {task: read_json(Path(args.prepared) / task / "schema.json") for task in kinds}
    inputs = ReportInputs(
        scores={task: read_json(Path(args.metrics) / f"{task}-scores.json") for task in kinds},
        baselines=baselines,
        comparison=read_json(Path(args.metrics) / "comparison.json"),
        schemas=schemas,
        histories={task: pd.read_csv(Path(args.plots) / task / "history.csv") for task in kinds},
        train_config={task: train.for_task(task, kind).as_params() for task, kind in kinds.items()},
        overrides={task: sorted(train.overrides.get(task, {})) for task in kinds},
        summaries=summaries,
        sweep_specs=dict(sweep.specs),
        ratios={task: overlap_ratio(schemas[task]["fold_rows"]) for task in kinds},
        provenance={
            "digest": stage_digest(os.environ.get("DVC_STAGE", "report")),
            "digest_tag": DIGEST_TAG,
            "tracking_uri": redact(train_runs["tracking_uri"]),  # runs files of older code may hold secrets
            "experiment": params["tracking"]["experiment"],
            "train_runs": train_runs["runs"],
            "sweep_runs": sweep_runs,
            "baselines_run": read_json(runs / "baselines.json")["parent"],
            "baseline_children": sum(row["model"] == "sklearn" for row in baselines["held_out"]),
            "schemas": schemas,
            "versions": {"python": platform.python_version()} | {name: version(name) for name in PACKAGES},
            "params_yaml": params_text.strip(),
        },
    )
    document = build(inputs)
    figures = Path(args.figures)
    names = [b["name"] for s in document["sections"] for b in s["blocks"] if b["kind"] == "figure"]
    out = Path(args.out)
    with staged_outputs() as outputs:
        relative = (
            Path(*[".."] * len(out.parts)) / figures if not figures.is_relative_to(out) else figures.relative_to(out)
        )
        outputs.text(out / "report.md", render_markdown(document, relative.as_posix()))
        outputs.text(
            out / "report.html",
            render_html(document, {name: (figures / name).read_bytes() for name in names}),
        )
    print(f"report: {out / 'report.md'} and {out / 'report.html'}")
    if source_changed():
        print("report: backprop/, stages/, params.yaml or dvc.yaml differ from the last commit (git status)")


if __name__ == "__main__":
    run_stage(main)
