"""Figures as pure functions: data frames in, matplotlib Figures out. The stages save them.

Rules every figure keeps: a grid is a heatmap whose cells say when not every fold
learned; an axis whose values span decades is logarithmic; at most six colours per panel, or a
labelled sequential map; every point is drawn or marked (a fit that did not learn is marked by
its outcome, never silently left out); a mean over folds never steps because a fold stopped."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.colors import LogNorm, Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from backprop.lab.blocks import LABELS
from backprop.lab.protocol import OUTCOMES

SPLIT_STYLE = {"train": "-", "val": "--", "test": ":"}
SPLIT_COLOUR = {"train": "C2", "val": "C0", "test": "C1"}
METRIC_LABEL = {
    "mse": "MSE (target units²)",
    "rmse": "RMSE (target units)",
    "log_loss": "log loss (nats)",
    "accuracy": "accuracy",
    "r2": "R²",
}
HIGHER_IS_BETTER = {"accuracy", "r2"}
# How a fit that did not learn is marked: never by a value, always by its outcome.
NOT_LEARNED = [outcome for outcome in OUTCOMES if outcome != "learned"]
OUTCOME_STYLE = {
    "diverged": {"marker": "x", "color": "C3"},
    "oscillating": {"marker": "o", "facecolors": "none", "edgecolors": "C4"},
    "stalled": {"marker": "s", "color": "0.45"},
    "no_better_than_constant": {"marker": "D", "color": "0.65"},
}
OUTCOME_SHORT = {"diverged": "div.", "oscillating": "osc.", "stalled": "stalled", "no_better_than_constant": "≈const."}
INCOMPLETE_STYLE: dict[str, Any] = {"facecolor": "0.88", "edgecolor": "0.55", "hatch": "///"}
BEST_STYLE: dict[str, Any] = {"fill": False, "edgecolor": "black", "linewidth": 2.5}
LIMIT_LABEL = "lr limit 2/λ_max at init"
BEST_EPOCH_LABEL = "best epoch (weights restored)"


def _label(metric: str) -> str:
    return METRIC_LABEL.get(metric, metric)


def _spans_decades(values) -> bool:
    """Positive values whose largest is more than ten times the smallest: a log axis."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return len(values) > 0 and bool((values > 0).all()) and values.max() > 10 * values.min()


def _counts(row) -> dict[str, int]:
    """The outcomes other than learned that a summary row counts, in OUTCOMES order."""
    return {outcome: int(row[outcome]) for outcome in NOT_LEARNED if int(row.get(outcome, 0) or 0) > 0}


def _complete(row) -> bool:
    return int(row["learned"]) == int(row["fits"])


def _counts_text(counts: dict[str, int], short: bool = False) -> str:
    return ", ".join(f"{n} {OUTCOME_SHORT[o] if short else o}" for o, n in counts.items())


def _mark_outcomes(axis, xs: Sequence[float], counts: Sequence[dict[str, int]]) -> None:
    """At the top of the axis (no value: the y position is the axis's, not the data's), one
    marker per outcome that some fits at x had, stacked, each with its count; one legend entry
    per outcome. Leaves head room so the markers cover no data."""
    placed: dict[str, list] = {outcome: [] for outcome in NOT_LEARNED}
    for x, outcome_counts in zip(xs, counts, strict=True):
        for level, (outcome, n) in enumerate(outcome_counts.items()):
            y = 0.95 - 0.07 * level
            placed[outcome].append((x, y))
            axis.annotate(
                f"{n} {outcome}",
                (x, y),
                xycoords=axis.get_xaxis_transform(),
                xytext=(6, 0),
                textcoords="offset points",
                fontsize=7,
                va="center",
            )
    if not any(placed.values()):
        return
    for outcome, points in placed.items():
        if points:
            axis.scatter(
                *np.array(points).T,
                transform=axis.get_xaxis_transform(),
                clip_on=False,
                s=40,
                zorder=5,
                label=f"{outcome} (count of folds beside)",
                gid=f"outcome:{outcome}",
                **OUTCOME_STYLE[outcome],
            )
    low, high = axis.get_ylim()
    if axis.get_yscale() == "log":
        axis.set_ylim(low, high * (high / low) ** 0.35)
    else:
        axis.set_ylim(low, high + 0.35 * (high - low))


def learning_curves(
    history: pd.DataFrame,
    *,
    title: str,
    loss: str,
    best_epoch: int | None = None,
    accuracy: str = "accuracy",
    floor: float | None = None,
) -> plt.Figure:
    """Loss and accuracy per epoch for train, val and test; a line at the best epoch, whose
    weights early stopping restored (none when training ran its epochs without stopping).
    ``accuracy`` labels the accuracy axis (regression's is 1 - MAPE); ``floor``, a generated
    table's noise variance, is drawn on the loss axis: no model's expected MSE goes below it."""
    # A table without accuracy (``accuracy: none``) gets the loss panel alone.
    metrics = [loss, "accuracy"] if history.filter(regex="_accuracy$").shape[1] else [loss]
    figure, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), layout="constrained", squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        for split, style in SPLIT_STYLE.items():
            column = f"{split}_{metric}"
            if column in history:
                axis.plot(history["epoch"], history[column], style, color=SPLIT_COLOUR[split], label=split)
        if best_epoch is not None:
            axis.axvline(best_epoch, color="0.3", linewidth=0.9, label=f"{BEST_EPOCH_LABEL}: {best_epoch}")
        if floor is not None and metric == loss:
            axis.axhline(floor, color="0.2", linestyle=":", linewidth=1.2, label=f"noise floor (noise²): {floor:g}")
        axis.set_xlabel("epoch (updates)")
        axis.set_ylabel(_label(metric) if metric == loss else accuracy)
        if metric == loss and (history.filter(regex=f"_{loss}$") > 0).all().all():
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    return figure


def lr_figure(summary: pd.DataFrame, results: pd.DataFrame, *, task: str, metric: str) -> plt.Figure:
    """Val and test ``metric`` against the learning rate (log axis): the mean with its 95%
    interval over the folds that learned, each learned fold's val score as a dot, the outcomes
    of the folds that did not learn marked at the top, and the stable limit 2/λ_max."""
    rows = summary[summary["task"] == task].sort_values("lr")
    fits = results[results["task"] == task]
    figure, axis = plt.subplots(figsize=(7, 4.5), layout="constrained")
    learned = fits[fits["outcome"] == "learned"]
    axis.scatter(
        learned["lr"], learned[f"val_{metric}"], s=10, color=SPLIT_COLOUR["val"], alpha=0.35, label="val, each fold"
    )
    for split, shift in (("val", 0.92), ("test", 1.08)):  # side by side, not on top of each other
        _mean_and_interval(axis, rows, "lr", shift, f"{split}_{metric}", split, "(folds that learned)")
    axis.set_xscale("log")
    if _spans_decades(fits.loc[fits["outcome"] == "learned", [f"val_{metric}", f"test_{metric}"]].to_numpy()):
        axis.set_yscale("log")
    for index, limit in enumerate(sorted(rows["lr_limit"].dropna().unique()) if "lr_limit" in rows else []):
        axis.axvline(limit, color="0.2", linestyle="-.", label=f"{LIMIT_LABEL} ({limit:.3g})" if index == 0 else None)
    incomplete = rows[~rows.apply(_complete, axis=1)]
    _mark_outcomes(axis, incomplete["lr"].tolist(), [_counts(row) for _, row in incomplete.iterrows()])
    axis.set_xticks(rows["lr"], [f"{lr:g}" for lr in rows["lr"]])
    axis.minorticks_off()
    axis.set_xlim(rows["lr"].min() / 1.6, rows["lr"].max() * 1.6)  # room for the outcome labels
    axis.set_xlabel("learning rate (log scale)")
    axis.set_ylabel(f"{_label(metric)} at the best epoch")
    axis.set_title(f"{task}: {LABELS.get(metric, metric)} vs learning rate ({int(rows['fits'].max())} folds per lr)")
    axis.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncol=2, fontsize=8)
    return figure


def column_position(value: float, columns: Sequence[float]) -> float:
    """Where ``value`` falls among log-spaced column values, in column units (column i at i):
    linear in log(value) between neighbours, extrapolated from the end segments outside."""
    logs, target = np.log(np.asarray(columns, dtype=float)), np.log(value)
    if len(logs) == 1:
        return 0.0
    i = int(np.clip(np.searchsorted(logs, target) - 1, 0, len(logs) - 2))
    return i + (target - logs[i]) / (logs[i + 1] - logs[i])


def _grid(rows: pd.DataFrame, row_key: str, column_key: str, column: str):
    """The rows' values in first-seen order, the sorted columns, and two matrices: ``column``
    per cell and whether every fold of the cell learned."""
    row_values = list(dict.fromkeys(rows[row_key]))
    columns = sorted(dict.fromkeys(rows[column_key]))
    values = np.full((len(row_values), len(columns)), np.nan)
    complete = np.zeros_like(values, dtype=bool)
    for _, row in rows.iterrows():
        i, j = row_values.index(row[row_key]), columns.index(row[column_key])
        values[i, j], complete[i, j] = row[column], _complete(row)
    return row_values, columns, values, complete


def _colour_scale(values: np.ndarray, metric: str):
    """A sequential map, best values bright; logarithmic if the values span decades."""
    finite = values[np.isfinite(values)]
    norm: Normalize
    if _spans_decades(finite):
        norm = LogNorm(finite.min(), finite.max())
    else:
        norm = Normalize(*(finite.min(), finite.max()) if len(finite) else (0, 1))
    return plt.get_cmap("viridis" if metric in HIGHER_IS_BETTER else "viridis_r"), norm


def _write_cells(axis, rows: pd.DataFrame, position, values, complete, cmap, norm) -> None:
    """Each complete cell's value in a colour readable on it; each incomplete cell hatched grey
    with its outcomes (and the mean of the folds that learned, if any did)."""
    for _, row in rows.iterrows():
        i, j = position(row)
        if complete[i, j]:
            red, green, blue, _ = cmap(norm(values[i, j]))
            colour = "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else "black"
            axis.text(j, i, f"{values[i, j]:.4g}", ha="center", va="center", fontsize=8, color=colour)
            continue
        axis.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, gid="incomplete", **INCOMPLETE_STYLE))
        text = _counts_text(_counts(row), short=True)
        if int(row["learned"]):
            text += f"\n{int(row['learned'])} learned: {values[i, j]:.4g}"
        axis.text(j, i, text, ha="center", va="center", fontsize=7, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})


def _outline_best(axis, values, complete, metric: str) -> None:
    """Outline each row's best cell among those where every fold learned."""
    for i, row in enumerate(np.where(complete, values, np.nan)):
        if np.isfinite(row).any():
            j = int(np.nanargmax(row) if metric in HIGHER_IS_BETTER else np.nanargmin(row))
            axis.add_patch(Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, gid="best", **BEST_STYLE))


def _mark_limits(axis, limits: Sequence[float], columns: Sequence[float]) -> None:
    """Per row, a red tick at the top and bottom of the row (the cell's text stays readable)
    where its lr limit falls on the log lr axis; clipped to the grid with an arrow if beyond."""
    for i, limit in enumerate(limits):
        if not np.isfinite(limit):
            continue
        x = column_position(limit, columns)
        edge = float(np.clip(x, -0.5, len(columns) - 0.5))
        for top, bottom in ((i - 0.5, i - 0.22), (i + 0.22, i + 0.5)):
            axis.plot([edge, edge], [top, bottom], color="C3", linewidth=2.5, gid="lr_limit")
        if edge != x:
            axis.plot(edge, i, marker="<" if x < edge else ">", color="C3", markersize=7, clip_on=False)


def grid_heatmap(
    summary: pd.DataFrame, *, task: str, row_key: str, column_key: str = "lr", metric: str, lr_in_units: bool = False
) -> plt.Figure:
    """One cell per (row_key, column_key) point: the mean val ``metric`` over its folds, on a
    labelled sequential colour map (logarithmic if the values span decades), the value written
    in the cell. A cell where not every fold learned is hatched grey and says which outcomes it
    had; the best complete cell of each row is outlined. With lr columns, each row's stable
    limit 2/λ_max is written in its label and drawn as a tick at its place on the lr axis; with
    ``lr_in_units`` the columns are multiples of each row's own limit, which sits at 1 in every row."""
    rows = summary[summary["task"] == task]
    row_values, columns, values, complete = _grid(rows, row_key, column_key, f"val_{metric}_mean")
    cmap, norm = _colour_scale(np.where(complete, values, np.nan), metric)
    figure, axis = plt.subplots(
        figsize=(max(1.5 + 1.25 * len(columns), 6.5), 1.6 + 0.62 * len(row_values)), layout="constrained"
    )
    image = axis.imshow(np.ma.masked_invalid(np.where(complete, values, np.nan)), cmap=cmap, norm=norm, aspect="auto")
    better = "higher" if metric in HIGHER_IS_BETTER else "lower"
    figure.colorbar(image, ax=axis, label=f"val {_label(metric)}\nmean over folds, {better} is better")

    def position(row):
        return row_values.index(row[row_key]), columns.index(row[column_key])

    _write_cells(axis, rows, position, values, complete, cmap, norm)
    _outline_best(axis, values, complete, metric)
    labels = [str(value) for value in row_values]
    handles: list[Artist] = [Rectangle((0, 0), 1, 1, **BEST_STYLE), Rectangle((0, 0), 1, 1, **INCOMPLETE_STYLE)]
    names = [f"best {column_key} of the row", "not every fold learned"]
    if column_key == "lr" and "lr_limit" in rows:
        limits = rows.groupby(row_key, sort=False)["lr_limit"].mean().reindex(row_values).to_numpy()
        labels = [
            f"{value} (limit {limit:.2g})" if np.isfinite(limit) else str(value)
            for value, limit in zip(row_values, limits, strict=True)
        ]
        _mark_limits(axis, np.ones_like(limits) if lr_in_units else limits, columns)
        handles.append(Line2D([], [], color="C3", linewidth=2))
        names.append(f"{LIMIT_LABEL}, placed on the log lr axis")
    axis.set_xticks(range(len(columns)), [f"{c:g}" if isinstance(c, float) else str(c) for c in columns])
    axis.set_yticks(range(len(row_values)), labels)
    if column_key == "lr":
        unit = " × the row's own limit" if lr_in_units else ""
        axis.set_xlabel(f"{column_key}{unit} (log-spaced columns)")
    else:
        axis.set_xlabel(column_key)
    axis.set_ylabel(row_key)
    axis.set_xlim(-0.5, len(columns) - 0.5)
    axis.set_ylim(len(row_values) - 0.5, -0.5)
    axis.set_title(f"{task}: val {_label(metric)} by {row_key} and {column_key} ({int(rows['fits'].max())} folds)")
    figure.legend(handles, names, loc="outside lower center", ncol=len(names), fontsize=8)
    return figure


def capacity_figure(summary: pd.DataFrame, *, metric: str, title: str | None = None) -> plt.Figure:
    """Train, val and test ``metric`` against the hidden width (log2 axis), mean with its 95%
    interval over the folds that learned; widths where not every fold learned are marked. With
    an lr in the grid, each width is drawn at the lr where its training error is lowest (among
    the lrs where every fold learned), written beside its point."""
    rows = best_fitting(summary, metric)
    # One hidden layer: its width on a log2 axis. Layer lists ("[16, 16]"): one place each, in grid order.
    widths = pd.to_numeric(rows["hidden"], errors="coerce")
    one_layer = bool(widths.notna().all())
    rows = rows.assign(_x=widths if one_layer else np.arange(1.0, len(rows) + 1)).sort_values("_x")
    figure, axis = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for split, shift in (("train", 2**-0.06), ("val", 1.0), ("test", 2**0.06)):
        _mean_and_interval(axis, rows, "_x", shift, f"{split}_{metric}", split, linestyle=SPLIT_STYLE[split])
    if "lr" in rows:
        for _, row in rows.iterrows():
            axis.annotate(f"lr {row['lr']:g}", (row["_x"], row[f"train_{metric}_mean"]), xytext=(4, -12),
                          textcoords="offset points", fontsize=7, color=SPLIT_COLOUR["train"])  # fmt: skip
    if one_layer:
        axis.set_xscale("log", base=2)
    axis.set_xticks(rows["_x"], [str(h) for h in rows["hidden"]])
    axis.minorticks_off()
    incomplete = rows[~rows.apply(_complete, axis=1)]
    _mark_outcomes(axis, incomplete["_x"].tolist(), [_counts(row) for _, row in incomplete.iterrows()])
    axis.set_xlabel("hidden units (log2 scale)" if one_layer else "hidden layers")
    axis.set_ylabel(_label(metric))
    axis.set_title(title or f"{metric} vs width ({int(rows['fits'].max())} folds per width)")
    axis.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncol=4, fontsize=8)
    return figure


def _mean_and_interval(axis, rows, x: str, shift: float, column: str, split: str, note: str = "", **style):
    """``column``'s mean with its 95% interval as error bars against ``x`` (moved by the factor
    ``shift``, so that splits drawn at the same x stay apart)."""
    mean = rows[f"{column}_mean"]
    axis.errorbar(
        rows[x] * shift,
        mean,
        yerr=[mean - rows[f"{column}_ci_low"], rows[f"{column}_ci_high"] - mean],
        marker="o",
        capsize=3,
        color=SPLIT_COLOUR[split],
        label=f"{split}: mean, 95% CI {note}".strip(),
        **style,
    )


def best_fitting(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per width, the row (lr) with the lowest mean training ``metric`` among those where every
    fold learned, or the lowest anyway when none did; the summary itself without an lr."""
    if "lr" not in summary:
        return summary
    complete = summary.apply(_complete, axis=1)
    ranked = summary.assign(_rank=summary[f"train_{metric}_mean"].where(complete, np.inf))
    ranked = ranked.sort_values(["_rank", f"train_{metric}_mean"], na_position="last")
    return ranked.groupby("hidden", sort=False).head(1).drop(columns="_rank")


def fold_band(curves: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean, min and max of ``column`` over the fits (repeat, fold) at each epoch that every
    fit reached: the mean stops where the shortest fit stopped instead of stepping."""
    wide = curves.pivot_table(index="epoch", columns=["repeat", "fold"], values=column, dropna=False)
    wide = wide.dropna()
    return pd.DataFrame({"mean": wide.mean(axis=1), "min": wide.min(axis=1), "max": wide.max(axis=1)})


def loss_curves(
    curves: pd.DataFrame,
    *,
    reach_curve: str,
    level: float,
    pairs: Sequence[tuple[str, float]] | None = None,
    title: str | None = None,
) -> plt.Figure:
    """``reach_curve`` against the epoch (symmetric log axis: epoch 0 stays on it) for each
    (loss, lr) of ``pairs`` (default: every pair in ``curves``): one panel per loss on shared
    axes, a colour per lr, the mean over folds only on the epochs every fold reached (it ends
    where the shortest fit ended instead of stepping), a min–max band, and a line at the level
    the sweep counts epochs to."""
    if pairs is None:
        pairs = list(dict.fromkeys(zip(curves["loss"], curves["lr"], strict=True)))
    losses = list(dict.fromkeys(loss for loss, _ in pairs))
    lrs = sorted({lr for _, lr in pairs})
    colours = dict(zip(lrs, plt.cm.viridis(np.linspace(0, 0.8, len(lrs))), strict=True))
    figure, axes = plt.subplots(
        1, len(losses), figsize=(4.6 * len(losses) + 1, 4.4), sharex=True, sharey=True, layout="constrained"
    )
    axes = np.atleast_1d(axes)
    folds, last = set(), 1
    for axis, loss in zip(axes, losses, strict=True):
        for lr in sorted(lr for name, lr in pairs if name == loss):
            fits = curves[(curves["loss"] == loss) & np.isclose(curves["lr"], lr)]
            if fits.empty:
                raise ValueError(f"no curves for loss={loss}, lr={lr}")
            folds.add(len(fits.groupby(["repeat", "fold"])))
            band = fold_band(fits, reach_curve)
            last = max(last, int(band.index.max()))
            axis.plot(band.index, band["mean"], color=colours[lr], gid=f"mean:{loss}:{lr:g}")
            axis.fill_between(band.index, band["min"], band["max"], color=colours[lr], alpha=0.15, linewidth=0)
        axis.axhline(level, color="0.2", linestyle=":", linewidth=1)
        axis.set_xlabel("epoch (updates; log scale past 1)")
        axis.set_title(f"loss: {LABELS.get(loss, loss)}")
        axis.grid(alpha=0.3)
    axes[0].set_xscale("symlog", linthresh=1, linscale=0.3)  # shared: sets every panel
    axes[0].set_xlim(0, last * 1.05)
    ticks = [0] + [10**k for k in range(int(np.log10(last)) + 1)]
    axes[0].set_xticks(ticks, [str(t) for t in ticks])
    axes[0].set_ylabel(f"{reach_curve.replace('_', ' ')} (mean over folds, band min–max)")
    handles = [Line2D([], [], color=colours[lr], label=f"lr {lr:g}") for lr in lrs]
    handles.append(Line2D([], [], color="0.2", linestyle=":", linewidth=1, label=f"level {level:g}"))
    figure.legend(handles=handles, loc="outside right center", fontsize=8)  # one legend: colours are shared
    n = "/".join(map(str, sorted(folds)))
    figure.suptitle(
        (f"{title}: " if title else "") + f"{reach_curve.replace('_', ' ')} per epoch, {n} folds; "
        "each mean ends at its shortest fit's last epoch",
        fontsize=10,
    )
    return figure


def reach_level(curves: pd.DataFrame, column: str) -> float:
    """A training loss every rate that trained reaches: 10% above the highest of their lowest
    losses, over the rates whose every fit ended below where it started (a diverging fit ends
    far above its start)."""
    ordered = curves.sort_values("epoch")
    ends = ordered.groupby(["lr", "repeat", "fold"])[column].agg(["first", "last", "min"])
    trained = ends.groupby("lr").apply(lambda fits: bool((fits["last"] < fits["first"]).all()))
    lowest = ends.loc[trained[trained].index.tolist()].groupby("lr")["min"].max() if trained.any() else []
    return float(np.max(lowest) * 1.1) if len(lowest) else float("nan")


def epochs_to_level(curves: pd.DataFrame, column: str, level: float) -> pd.DataFrame:
    """Per (lr, repeat, fold): the first recorded epoch whose ``column`` is at or below ``level``
    (NaN when never)."""
    rows = []
    for (lr, repeat, fold), fit in curves.groupby(["lr", "repeat", "fold"], sort=True):
        hits = fit.loc[fit[column] <= level, "epoch"]
        rows.append({"lr": lr, "repeat": repeat, "fold": fold, "epoch": float(hits.min()) if len(hits) else np.nan})
    return pd.DataFrame(rows)


def lr_curves(curves: pd.DataFrame, *, task: str, metric: str) -> plt.Figure:
    """What the learning rate does to training: left, the training loss of one fold (the first)
    at every rate on one log-scale plot (slow descent, fast descent, a catapult's spike, a
    divergence that ends the curve); right, the epochs each rate needs to reach one stated
    training loss, every fold a dot and the mean a line (folds that never reach it marked)."""
    column = f"train_{metric}"
    fits = curves[curves["task"] == task]
    lrs = sorted(fits["lr"].unique())
    colours = dict(zip(lrs, plt.cm.viridis(np.linspace(0, 0.9, len(lrs))), strict=True))
    first = fits[["repeat", "fold"]].drop_duplicates().sort_values(["repeat", "fold"]).iloc[0]
    one = fits[(fits["repeat"] == first["repeat"]) & (fits["fold"] == first["fold"])]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    for lr in lrs:
        curve = one[one["lr"] == lr].sort_values("epoch")
        curve = curve[np.isfinite(curve[column])]
        left.plot(curve["epoch"] + 1, curve[column], color=colours[lr], label=f"lr {lr:g}")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("epoch + 1 (log scale)")
    left.set_ylabel(f"train {_label(metric)} (log scale)")
    left.set_title(f"fold {int(first['fold'])}: training loss at every rate; a curve that stops diverged", fontsize=9)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    level = reach_level(fits, column)
    reached = epochs_to_level(fits, column, level)
    for lr, group in reached.groupby("lr"):
        right.scatter([lr] * group["epoch"].notna().sum(), group["epoch"].dropna(), color=colours[lr], s=14)
        missing = int(group["epoch"].isna().sum())
        if missing:
            right.annotate(
                f"{missing} never", (lr, 0.95), xycoords=("data", "axes fraction"), fontsize=8, ha="center", color="C3"
            )
    means = reached.groupby("lr")["epoch"].mean().dropna()
    right.plot(means.index, means.to_numpy(), color="0.3", linewidth=1, label="mean over the folds that reach it")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
    right.minorticks_off()
    right.set_xlim(min(lrs) / 1.6, max(lrs) * 1.6)
    right.set_xlabel("learning rate (log scale)")
    right.set_ylabel("first recorded epoch at or below the level")
    right.set_title(f"epochs to train {LABELS.get(metric, metric)} ≤ {level:.4g} (every fold)", fontsize=9)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    figure.suptitle(f"{task}: the effect of the learning rate on training", fontsize=10)
    return figure


def png(draw: Callable[..., plt.Figure], arguments: dict) -> bytes:
    """The PNG file of ``draw(**arguments)``: what a stage's worker sends back to be written."""
    buffer = io.BytesIO()
    save(draw(**arguments), buffer)
    return buffer.getvalue()


def save(figure: plt.Figure, path) -> None:
    # Fixed metadata: the same data gives the same PNG bytes.
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)
