"""Train one network per task, write models, metrics and curves, record MLflow runs (dvc stage `train`)."""

import argparse
from pathlib import Path

from backprop.lab import pyfunc
from backprop.lab.config import load_tracking, load_train, read_params
from backprop.lab.io import load_prepared, progress_bar, run_stage, staged_outputs
from backprop.lab.tracking import Tracker, crowns_champion, result_metrics, run_tags
from backprop.lab.training import RunResult, train_model
from backprop.losses import TASKS


def summary_line(result: RunResult, run_id: str) -> str:
    """What the stage prints per task: the test scores a reader compares, rounded."""
    history, test = result.history, result.scores["test"]
    if history.diverged:
        scores = f"diverged at epoch {history.diverged_epoch}"
    elif result.task == "regression":
        scores = f"test MSE {test['mse']:.1f}, R² {test['r2']:.2f}, accuracy {test['accuracy']:.3f}"
    else:
        scores = f"test log loss {test['log_loss']:.3f}, accuracy {test['accuracy']:.3f}"
    if not history.diverged and history.best_epoch is not None:
        scores += f", best epoch {history.best_epoch} of {history.epochs_run}"
    return f"train {result.task}: {scores} (run {run_id[:8]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--models", required=True, help="folder for the MLflow model directories <task>/")
    parser.add_argument("--metrics", required=True, help="folder for <task>.json (headline) and <task>-scores.json")
    parser.add_argument("--plots", required=True, help="folder for <task>/history.csv")
    parser.add_argument("--runs", required=True, help="JSON file for the MLflow run ids")
    args = parser.parse_args()

    params = read_params()
    train, tracking = load_train(params), load_tracking(params)
    tracker = Tracker(tracking.experiment)
    champion = crowns_champion(tracking.champion_branch)
    run_ids, model_ids = {}, {}
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
                model_dir = outputs.path(Path(args.models) / task)
                pyfunc.save(model_dir, result.model, prepared)
                history = outputs.path(Path(args.plots) / task / "history.csv")
                result.history_frame().to_csv(history, index=False)
                outputs.json(Path(args.metrics) / f"{task}.json", result.headline())
                outputs.json(Path(args.metrics) / f"{task}-scores.json", result.summary())
                metrics = result_metrics(result.history, result.scores, tracking.max_logged_steps)
                tracker.log(run_id, metrics=metrics, tags={"diverged": str(result.history.diverged).lower()})
                tracker.log_artifacts(run_id, [history])
                if tracking.log_models:
                    model_ids[task], _ = tracker.log_model(
                        run_id,
                        model_dir,
                        step=result.history.epochs_run,  # the final scores' step: they are the model's
                        registered_name=f"{tracking.experiment}-{task}",
                        champion=champion,
                    )
                run_ids[task] = run_id
                print(summary_line(result, run_id))
        outputs.json(args.runs, {"tracking_uri": tracker.uri, "runs": run_ids, "models": model_ids})


if __name__ == "__main__":
    run_stage(main)
