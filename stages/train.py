"""Train one network per task, write weights, metrics and curves, record MLflow runs (dvc stage `train`)."""

import argparse
from pathlib import Path

from backprop.lab.config import load_tracking, load_train, read_params
from backprop.lab.io import load_prepared, progress_bar, run_stage, staged_outputs
from backprop.lab.tracking import Tracker, result_metrics, run_tags
from backprop.lab.training import train_model
from backprop.losses import TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--models", required=True, help="folder for <task>.npz")
    parser.add_argument("--metrics", required=True, help="folder for <task>.json")
    parser.add_argument("--plots", required=True, help="folder for <task>/history.csv")
    parser.add_argument("--runs", required=True, help="JSON file for the MLflow run ids")
    args = parser.parse_args()

    params = read_params()
    train, tracking = load_train(params), load_tracking(params)
    tracker = Tracker(tracking.experiment)
    run_ids = {}
    with staged_outputs() as outputs:
        for task in TASKS:
            prepared, schema = load_prepared(args.prepared, task)
            config = train.for_task(task)
            tags = run_tags("train", task=task)
            with tracker.run(f"train-{task}", tags) as run_id:
                data_params = {"source": schema["source"], "sha256": schema["sha256"], "rows": schema["rows"]}
                tracker.log(run_id, params=config.as_params() | {"task": task, "data": data_params})
                with progress_bar(config.epochs, f"train {task}") as bar:
                    result = train_model(prepared, task, config, progress=bar)
                weights = outputs.path(Path(args.models) / f"{task}.npz")
                result.model.save(weights)
                history = outputs.path(Path(args.plots) / task / "history.csv")
                result.history_frame().to_csv(history, index=False)
                outputs.json(Path(args.metrics) / f"{task}.json", result.summary())
                metrics = result_metrics(result.history, result.scores, tracking.max_logged_steps)
                tracker.log(run_id, metrics=metrics, tags={"diverged": str(result.history.diverged).lower()})
                tracker.log_artifacts(run_id, [history, weights])
                if tracking.log_models:
                    tracker.log_model(run_id, weights, prepared.features, prepared.mean, prepared.std)
                run_ids[task] = run_id
                print(f"{task}: test {result.scores['test']}  (MLflow run {run_id})")
        outputs.json(args.runs, {"tracking_uri": tracker.uri, "runs": run_ids})


if __name__ == "__main__":
    run_stage(main)
