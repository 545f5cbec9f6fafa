"""A sweep: the same ``train_model`` as the train stage, one fit per (task, value, seed). No I/O."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from backprop.lab.config import SweepConfig, TrainConfig
from backprop.lab.executor import Job
from backprop.lab.tracking import downsample_steps
from backprop.lab.training import RunResult, compare_only, describe_config


def sweep_jobs(name: str, sweep: SweepConfig, train: TrainConfig, prepared: Mapping[str, object]) -> list[Job]:
    """One fit per (task, value, seed) of sweep ``name``, keyed by those coordinates: each fit's
    seed is its own coordinate, never its place in an execution order. ``prepared`` maps a task to
    its data (or to the executor's handle of it)."""
    jobs = []
    for task in sweep.spec(name).tasks:
        for position, (value, seed, config) in enumerate(sweep.configs(name, train, task)):
            point = f"{name}={value} seed={seed} on {task}"
            jobs.append(
                Job(
                    key=(task, position // len(sweep.seeds), seed),
                    fn=compare_only,
                    args=(prepared[task], task, config),
                    describe=f"{point} ({describe_config(config)})",
                )
            )
    return jobs


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
        "outcome": result.outcome,
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
    """Per task: the value with the lowest mean validation loss over seeds among those whose every
    seed learned (a value with a diverged, stalled or oscillating seed ranks after all of those)."""
    best = {}
    for task, rows in results.groupby("task", sort=False):
        column = f"val_{metric_by_task[task]}"
        stats = (
            rows.assign(failed=rows["outcome"] != "learned")
            .groupby("value", sort=False)
            .agg(mean=(column, "mean"), std=(column, "std"), failed=("failed", "sum"))
        )
        ranked = stats.assign(key=np.where(stats["failed"] > 0, np.inf, stats["mean"])).sort_values(
            ["key", "failed", "mean"]
        )
        top = ranked.index[0]
        best[task] = {
            "value": top,
            "mean": float(ranked.loc[top, "mean"]),
            "std": float(ranked.loc[top, "std"]),
            "every_seed_learned": bool(ranked.loc[top, "failed"] == 0),
        }
    return best
