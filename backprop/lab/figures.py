"""Figures as pure functions: data frames in, matplotlib Figures out. The stages save them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

SPLIT_STYLE = {"train": "-", "val": "--", "test": ":"}
METRIC_LABEL = {
    "mse": "MSE",
    "log_loss": "log loss",
    "accuracy": "accuracy",
    "rmse": "RMSE",
    "r2": "R²",
}
LOG_X_SWEEPS = {"lr", "hidden", "batch_size", "epochs"}


def _label(metric: str) -> str:
    return METRIC_LABEL.get(metric, metric)


def learning_curves(history: pd.DataFrame, *, title: str, loss: str, best_epoch: int | None = None) -> plt.Figure:
    """Loss and accuracy per epoch for train, val and test; a marker where early stopping kept
    the weights."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for axis, metric in zip(axes, [loss, "accuracy"], strict=True):
        for split, style in SPLIT_STYLE.items():
            column = f"{split}_{metric}"
            if column in history:
                axis.plot(history["epoch"], history[column], style, label=split)
        if best_epoch is not None:
            axis.axvline(best_epoch, color="grey", linewidth=0.8, label=f"kept (epoch {best_epoch})")
        axis.set_xlabel("epoch")
        axis.set_ylabel(_label(metric))
        if metric == loss and (history.filter(like=f"_{loss}") > 0).all().all():
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    return figure


def sweep_summary(results: pd.DataFrame, *, name: str, metrics: dict[str, str]) -> plt.Figure:
    """Final val and test metric against the swept value, mean ± std over seeds, one panel per
    task; diverged runs are counted in the labels, not averaged in."""
    tasks = list(dict.fromkeys(results["task"]))
    figure, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), layout="constrained", squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        rows = results[results["task"] == task]
        values = list(dict.fromkeys(rows["value"]))
        positions = _positions(values, name)
        metric = metrics[task]
        for split, marker in (("train", "s"), ("val", "o"), ("test", "^")):
            stats = rows.groupby("value", sort=False)[f"{split}_{metric}"].agg(["mean", "std"]).reindex(values)
            axis.errorbar(
                positions,
                stats["mean"],
                yerr=stats["std"].fillna(0),
                marker=marker,
                capsize=3,
                label=f"{split} (mean ± std)",
            )
        diverged = rows.groupby("value", sort=False)["diverged"].sum().reindex(values)
        ticks = [f"{v}\n{int(d)} diverged" if d else f"{v}" for v, d in zip(values, diverged, strict=True)]
        axis.set_xticks(positions, ticks, fontsize=8)
        if name in LOG_X_SWEEPS:
            axis.set_xscale("log")
            axis.minorticks_off()
            axis.set_xticks(positions, ticks, fontsize=8)
        if (rows.filter(regex=f"_{metric}$") > 0).all().all():
            axis.set_yscale("log")
        axis.set_xlabel(name)
        axis.set_ylabel(f"final {_label(metric)}")
        axis.set_title(f"{task}: {metric} vs {name} ({rows['seed'].nunique()} seeds)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return figure


def sweep_curves(curves: pd.DataFrame, results: pd.DataFrame, *, name: str, metrics: dict[str, str]) -> plt.Figure:
    """Per swept value: the mean validation curve over the seeds still training, a min–max band,
    and the training curve dotted. A seed that stops early or diverges leaves the mean there (a
    step in the curve); values that diverged say so in the legend."""
    tasks = list(dict.fromkeys(curves["task"]))
    figure, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), layout="constrained", squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        rows = curves[curves["task"] == task]
        metric = metrics[task]
        colours = plt.cm.viridis(np.linspace(0, 0.9, rows["value"].nunique()))
        outcome = results[results["task"] == task].groupby("value", sort=False)["diverged"].agg(["sum", "count"])
        for colour, (value, group) in zip(colours, rows.groupby("value", sort=False), strict=True):
            by_epoch = group.groupby("epoch")
            val = by_epoch[f"val_{metric}"]
            mean = val.mean()
            diverged, seeds = outcome.loc[value] if value in outcome.index else (0, 0)
            label = f"{name}={value}" + (f" ({diverged}/{seeds} diverged)" if diverged else "")
            axis.plot(mean.index, mean, color=colour, label=label)
            axis.fill_between(mean.index, val.min(), val.max(), color=colour, alpha=0.15, linewidth=0)
            axis.plot(mean.index, by_epoch[f"train_{metric}"].mean(), ":", color=colour, linewidth=0.8)
        finite = rows[f"val_{metric}"].replace([np.inf, -np.inf], np.nan).dropna()
        if len(finite) and (finite > 0).all():
            axis.set_yscale("log")
            # Exploding runs would squash every other curve: clip at twice the starting loss.
            start = rows.loc[rows["epoch"] == 0, f"val_{metric}"].median()
            axis.set_ylim(finite.min() * 0.8, min(finite.max(), 2 * start) * 1.05)
        axis.set_xlabel("epoch")
        axis.set_ylabel(f"{_label(metric)} (val solid, train dotted)")
        axis.set_title(f"{task}: learning curves by {name}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, ncol=2)
    return figure


def _positions(values: list, name: str) -> list:
    if name in LOG_X_SWEEPS and all(isinstance(v, int | float) and v > 0 for v in values):
        return [float(v) for v in values]
    return list(range(len(values)))


def save(figure: plt.Figure, path) -> None:
    # Fixed metadata: the same data gives the same PNG bytes.
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)
