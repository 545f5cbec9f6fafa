"""A sweep: the same ``train_model`` as the train stage, once per (task, value, seed). No I/O."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from backprop.lab.config import SweepConfig, TrainConfig
from backprop.lab.datasets import Prepared
from backprop.lab.tracking import downsample_steps
from backprop.lab.training import RunResult, train_model


def run_sweep(
    name: str, sweep: SweepConfig, train: TrainConfig, prepared: dict[str, Prepared]
) -> Iterator[tuple[str, object, int, RunResult]]:
    for task in sweep.spec(name).tasks:
        for value, seed, config in sweep.configs(name, train, task):
            yield task, value, seed, train_model(prepared[task], task, config)


def result_row(name: str, task: str, value, seed: int, result: RunResult) -> dict:
    """One line of results.csv: what was varied, how training went, the final scores."""
    history = result.history
    return {
        "sweep": name,
        "task": task,
        "value": value,
        "seed": seed,
        "epochs_run": history.epochs_run,
        "diverged": history.diverged,
        "diverged_epoch": history.diverged_epoch,
        "stopped_early": history.stopped_early,
        "best_epoch": history.best_epoch,
    } | result.flat_scores()


def curve_rows(task: str, value, seed: int, result: RunResult, *, epochs: int, points: int) -> pd.DataFrame:
    """The run's curves on a grid shared by every seed (from the configured epochs), so the
    mean over seeds lines up; a run that stopped or diverged early simply has fewer rows."""
    steps = downsample_steps(epochs, points)
    steps = steps[steps < result.history.epochs_run]
    frame = pd.DataFrame({column: values[steps] for column, values in result.history.columns.items()})
    frame.insert(0, "epoch", steps)
    frame.insert(0, "seed", seed)
    frame.insert(0, "value", value)
    frame.insert(0, "task", task)
    return frame


def best_value(results: pd.DataFrame, metric_by_task: dict[str, str]) -> dict[str, dict]:
    """Per task: the value with the lowest mean validation loss over seeds (diverged runs count
    as failures: a value with any diverged seed ranks after every value with none)."""
    best = {}
    for task, rows in results.groupby("task", sort=False):
        column = f"val_{metric_by_task[task]}"
        stats = rows.groupby("value", sort=False).agg(
            mean=(column, "mean"), std=(column, "std"), diverged=("diverged", "sum")
        )
        ranked = stats.assign(key=np.where(stats["diverged"] > 0, np.inf, stats["mean"])).sort_values("key")
        top = ranked.index[0]
        best[task] = {
            "value": top,
            "mean": float(ranked.loc[top, "mean"]),
            "std": float(ranked.loc[top, "std"]),
        }
    return best
