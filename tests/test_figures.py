"""The figures show what the data say: outcomes marked where folds did not learn, the best cell
outlined, log axes where values span factors, means over folds that never step. Small synthetic
frames; the checks read the plotted data (offsets, patches, line data), not pixels."""

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import LogNorm

from backprop.lab import figures
from backprop.lab.config import ConfigError, SweepConfig
from backprop.lab.protocol import OUTCOMES


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def summary_row(task: str, point: dict, *, mean: float, lr_limit: float = 0.2, fits: int = 5, **outcomes) -> dict:
    counts = {outcome: outcomes.get(outcome, 0) for outcome in OUTCOMES if outcome != "learned"}
    learned = fits - sum(counts.values())
    row = {"task": task, **point, "fits": fits, "learned": learned, **counts, "lr_limit": lr_limit}
    for split, offset in (("train", -100.0), ("val", 0.0), ("test", 50.0)):
        value = mean + offset if learned else np.nan
        row |= {
            f"{split}_mse_mean": value,
            f"{split}_mse_std": 10.0,
            f"{split}_mse_ci_low": value - 20,
            f"{split}_mse_ci_high": value + 20,
        }
    return row


def outcome_offsets(axis, outcome: str) -> np.ndarray:
    [collection] = [c for c in axis.collections if c.get_gid() == f"outcome:{outcome}"]
    return collection.get_offsets()


# ---- the lr figure ------------------------------------------------------------------------------


def lr_frames():
    summary = pd.DataFrame(
        [
            summary_row("regression", {"lr": 0.01}, mean=3000),
            summary_row("regression", {"lr": 0.1}, mean=2800, oscillating=2),
            summary_row("regression", {"lr": 1.0}, mean=0, diverged=4, stalled=1),
        ]
    )
    results = pd.DataFrame(
        [
            {"task": "regression", "lr": lr, "fold": fold, "outcome": outcome, "val_mse": value, "test_mse": value}
            for lr, outcomes in ((0.01, ["learned"] * 5), (0.1, ["learned"] * 3 + ["oscillating"] * 2))
            for fold, (outcome, value) in enumerate(zip(outcomes, [2900, 3000, 3100, 2500, 2600], strict=True))
        ]
        + [{"task": "regression", "lr": 1.0, "fold": f, "outcome": "diverged", "val_mse": np.nan} for f in range(5)]
    )
    return summary, results


def test_a_figure_rendered_for_a_worker_is_the_file_the_stage_would_save(tmp_path):
    summary, results = lr_frames()
    arguments = {"summary": summary, "results": results, "task": "regression", "metric": "mse"}
    figures.save(figures.lr_figure(**arguments), tmp_path / "saved.png")
    png = figures.png(figures.lr_figure, arguments)
    assert png.startswith(b"\x89PNG") and png == (tmp_path / "saved.png").read_bytes()


def test_the_lr_figure_marks_each_outcome_at_its_lr_on_a_log_axis():
    summary, results = lr_frames()
    figure = figures.lr_figure(summary, results, task="regression", metric="mse")
    axis = figure.axes[0]
    assert axis.get_xscale() == "log"
    assert outcome_offsets(axis, "diverged")[:, 0].tolist() == [1.0]
    assert outcome_offsets(axis, "stalled")[:, 0].tolist() == [1.0]
    assert outcome_offsets(axis, "oscillating")[:, 0].tolist() == [0.1]
    # At the top of the axis (axes coordinates), never at a made-up value.
    [marker] = [c for c in axis.collections if c.get_gid() == "outcome:diverged"]
    _, y = marker.get_offset_transform().transform(marker.get_offsets()[0])
    _, bottom = axis.transAxes.transform((0, 0.8))
    _, top = axis.transAxes.transform((0, 1))
    assert bottom < y <= top
    texts = [text.get_text() for text in axis.texts]
    assert "4 diverged" in texts and "1 stalled" in texts and "2 oscillating" in texts
    # Every point is within the x range: the lr with no value is not off the axis.
    low, high = axis.get_xlim()
    assert low < 0.01 and high > 1.0


def test_the_lr_figure_draws_only_learned_folds_and_the_lr_limit():
    summary, results = lr_frames()
    figure = figures.lr_figure(summary, results, task="regression", metric="mse")
    axis = figure.axes[0]
    [dots] = [c for c in axis.collections if c.get_label() == "val, each fold"]
    assert len(dots.get_offsets()) == 5 + 3  # the oscillating folds' lucky lows are not drawn as values
    [limit] = [line for line in axis.lines if "2/λ_max" in line.get_label()]
    assert limit.get_xdata()[0] == pytest.approx(0.2)


# ---- the grid heatmap -----------------------------------------------------------------------------


def grid_summary(values: dict, limits: dict, not_learned: dict | None = None) -> pd.DataFrame:
    """values: (hidden, lr) -> mean val MSE; not_learned: (hidden, lr) -> {outcome: count}."""
    rows = []
    for (hidden, lr), mean in values.items():
        outcomes = (not_learned or {}).get((hidden, lr), {})
        rows.append(
            summary_row("regression", {"hidden": hidden, "lr": lr}, mean=mean, lr_limit=limits[hidden], **outcomes)
        )
    return pd.DataFrame(rows)


LRS = [0.01, 0.1, 1.0]


def test_the_heatmap_hatches_cells_where_not_every_fold_learned_and_says_why():
    values = dict(zip(itertools.product([4, 64], LRS), [3000, 2800, 2900, 2950, 2700, 2600], strict=True))
    summary = grid_summary(values, {4: 0.5, 64: 0.05}, {(64, 1.0): {"diverged": 3, "oscillating": 2}})
    figure = figures.grid_heatmap(summary, task="regression", row_key="hidden", metric="mse")
    axis = figure.axes[0]
    hatched = [p for p in axis.patches if p.get_gid() == "incomplete"]
    assert [(p.get_x() + 0.5, p.get_y() + 0.5) for p in hatched] == [(2, 1)]  # column lr 1.0, row 64
    assert hatched[0].get_hatch()
    assert "2 osc., 3 div." in [text.get_text() for text in axis.texts]  # in OUTCOMES order
    # The incomplete cell's mean is not coloured: the image holds no value there.
    image = axis.images[0].get_array()
    assert np.ma.is_masked(image[1, 2]) and not np.ma.is_masked(image[1, 1])


def test_the_heatmap_outlines_the_best_complete_cell_of_each_row():
    # Row 64's lowest mean (2600 at lr 1.0) had a fold diverge: its best complete cell is lr 0.1.
    values = dict(zip(itertools.product([4, 64], LRS), [3000, 2800, 2900, 2950, 2700, 2600], strict=True))
    summary = grid_summary(values, {4: 0.5, 64: 0.05}, {(64, 1.0): {"diverged": 1}})
    figure = figures.grid_heatmap(summary, task="regression", row_key="hidden", metric="mse")
    axis = figure.axes[0]
    best = [p for p in axis.patches if p.get_gid() == "best"]
    centres = sorted((round(p.get_y() + p.get_height() / 2), round(p.get_x() + p.get_width() / 2)) for p in best)
    assert centres == [(0, 1), (1, 1)]  # (row, column): lr 0.1 in both rows


def test_the_heatmap_places_each_rows_lr_limit_on_the_log_lr_axis():
    values = dict(zip(itertools.product([4, 64], LRS), [3000, 2800, 2900, 2950, 2700, 2600], strict=True))
    limits = {4: 10**-1.5, 64: 0.001}  # halfway between 0.01 and 0.1; beyond the first column
    figure = figures.grid_heatmap(grid_summary(values, limits), task="regression", row_key="hidden", metric="mse")
    axis = figure.axes[0]
    ticks = [line for line in axis.lines if line.get_gid() == "lr_limit"]
    xs = {row: [line.get_xdata()[0] for line in ticks if abs(np.mean(line.get_ydata()) - row) < 0.5] for row in (0, 1)}
    assert xs[0] == pytest.approx([0.5, 0.5])  # log-midway between columns 0 and 1
    assert xs[1] == pytest.approx([-0.5, -0.5])  # clipped at the left edge (with an arrow)
    labels = [label.get_text() for label in axis.get_yticklabels()]
    assert labels == ["4 (limit 0.032)", "64 (limit 0.001)"]


def test_rates_in_units_of_the_limit_put_every_rows_limit_at_1():
    values = dict(zip(itertools.product([4, 64], LRS), [3000, 2800, 2900, 2950, 2700, 2600], strict=True))
    limits = {4: 10**-1.5, 64: 0.001}  # absolute limits: still written in the row labels
    figure = figures.grid_heatmap(
        grid_summary(values, limits), task="regression", row_key="hidden", metric="mse", lr_in_units=True
    )
    axis = figure.axes[0]
    ticks = [line.get_xdata()[0] for line in axis.lines if line.get_gid() == "lr_limit"]
    assert ticks == pytest.approx([LRS.index(1.0)] * len(ticks)) and ticks  # the column of multiple 1
    assert "× the row's own limit" in axis.get_xlabel()
    assert [label.get_text() for label in axis.get_yticklabels()] == ["4 (limit 0.032)", "64 (limit 0.001)"]


def test_the_heatmap_colours_on_a_log_scale_only_when_values_span_decades():
    values = dict(zip(itertools.product([4, 64], LRS), [3000, 2800, 2900, 2950, 2700, 2600], strict=True))
    narrow = figures.grid_heatmap(
        grid_summary(values, {4: 1, 64: 1}), task="regression", row_key="hidden", metric="mse"
    )
    assert not isinstance(narrow.axes[0].images[0].norm, LogNorm)
    values[(64, 1.0)] = 20.0
    wide = figures.grid_heatmap(grid_summary(values, {4: 1, 64: 1}), task="regression", row_key="hidden", metric="mse")
    assert isinstance(wide.axes[0].images[0].norm, LogNorm)


def test_column_position_interpolates_in_log_space():
    assert figures.column_position(0.03, [0.01, 0.1, 1.0]) == pytest.approx(np.log10(3))
    assert figures.column_position(10.0, [0.01, 0.1, 1.0]) == pytest.approx(3.0)
    assert figures.column_position(0.001, [0.01, 0.1, 1.0]) == pytest.approx(-1.0)


# ---- capacity ------------------------------------------------------------------------------------


def test_the_capacity_figure_uses_a_log2_width_axis_and_marks_incomplete_widths():
    summary = pd.DataFrame(
        [summary_row("regression", {"hidden": h}, mean=2800) for h in (1, 4, 16)]
        + [summary_row("regression", {"hidden": 256}, mean=2900, stalled=2)]
    )
    figure = figures.capacity_figure(summary, metric="mse")
    axis = figure.axes[0]
    assert axis.get_xscale() == "log" and axis.xaxis.get_transform().base == 2
    assert outcome_offsets(axis, "stalled")[:, 0].tolist() == [256]
    assert {"train: mean, 95% CI", "val: mean, 95% CI", "test: mean, 95% CI"} <= {
        c.get_label() for c in axis.containers
    }


def test_the_capacity_figure_draws_each_width_at_the_lr_it_fits_best():
    summary = pd.DataFrame(
        [
            summary_row("regression", {"hidden": 4, "lr": 0.1}, mean=2900),
            summary_row("regression", {"hidden": 4, "lr": 0.3}, mean=2700),
            summary_row("regression", {"hidden": 64, "lr": 0.1}, mean=2800),
            summary_row("regression", {"hidden": 64, "lr": 0.3}, mean=2000, diverged=1),  # lowest, not every fold
        ]
    )
    chosen = figures.best_fitting(summary, "mse")
    assert sorted(zip(chosen["hidden"], chosen["lr"], strict=True)) == [(4, 0.3), (64, 0.1)]
    axis = figures.capacity_figure(summary, metric="mse").axes[0]
    (train,) = [c for c in axis.containers if c.get_label().startswith("train")]
    assert sorted(train.lines[0].get_ydata()) == [2600.0, 2700.0]  # train = mean − 100 in summary_row
    assert {t.get_text() for t in axis.texts} >= {"lr 0.3", "lr 0.1"}


def test_the_capacity_figure_draws_a_grid_of_layer_lists_one_place_each():
    summary = pd.DataFrame([summary_row("regression", {"hidden": h}, mean=2800) for h in ("[16]", "[16, 16]")])
    axis = figures.capacity_figure(summary, metric="mse").axes[0]
    assert axis.get_xscale() == "linear"
    assert [t.get_text() for t in axis.get_xticklabels()] == ["[16]", "[16, 16]"]
    assert axis.get_xlabel() == "hidden layers"


# ---- loss curves ---------------------------------------------------------------------------------


def curve_frame(lengths: dict, value=lambda fold, epoch: 0.5 + fold * 0.01 + epoch * 0.001) -> pd.DataFrame:
    """lengths: (loss, lr) -> each fold's number of rows on the shared grid 0, 10, 20, ..."""
    rows = []
    for (loss, lr), per_fold in lengths.items():
        for fold, n in enumerate(per_fold):
            for epoch in range(0, 10 * n, 10):
                rows.append(
                    {
                        "task": "classification",
                        "loss": loss,
                        "lr": lr,
                        "repeat": 0,
                        "fold": fold,
                        "epoch": epoch,
                        "val_accuracy": value(fold, epoch),
                    }
                )
    return pd.DataFrame(rows)


def test_loss_curves_average_only_epochs_every_fold_reached():
    curves = curve_frame({("log_loss", 0.3): [20, 7, 30], ("mse", 0.3): [20, 20, 20]})
    figure = figures.loss_curves(
        curves, reach_curve="val_accuracy", level=0.95, pairs=[("log_loss", 0.3), ("mse", 0.3)]
    )
    lines = {line.get_gid(): line for axis in figure.axes for line in axis.lines if line.get_gid()}
    short = lines["mean:log_loss:0.3"]
    assert short.get_xdata()[-1] == 60  # the fold with 7 rows ends at epoch 60: the mean ends there
    # Every point of the mean is over all three folds: no step where folds drop out.
    expected = [np.mean([0.5 + fold * 0.01 + epoch * 0.001 for fold in range(3)]) for epoch in range(0, 70, 10)]
    assert np.allclose(short.get_ydata(), expected)
    assert lines["mean:mse:0.3"].get_xdata()[-1] == 190


def test_loss_curves_draw_the_level_and_use_at_most_six_colours_per_panel():
    curves = curve_frame({(loss, lr): [5, 5] for loss in ("log_loss", "mse") for lr in (0.3, 0.6, 1.2)})
    figure = figures.loss_curves(curves, reach_curve="val_accuracy", level=0.95)
    for axis in figure.axes:
        assert any(list(line.get_ydata()) == [0.95, 0.95] for line in axis.lines)
        colours = {tuple(np.round(line.get_color(), 3)) for line in axis.lines if line.get_gid()}
        assert 0 < len(colours) <= 6
        assert axis.get_xscale() == "symlog"


def test_loss_curves_refuse_a_pair_with_no_curves():
    with pytest.raises(ValueError, match="no curves for loss=mse, lr=9"):
        figures.loss_curves(curve_frame({("mse", 0.3): [3]}), reach_curve="val_accuracy", level=0.9, pairs=[("mse", 9)])


# ---- learning curves -----------------------------------------------------------------------------


def history_frame() -> pd.DataFrame:
    epochs = np.arange(50)
    frame = pd.DataFrame({"epoch": epochs})
    for split, shift in (("train", 0), ("val", 5), ("test", 10)):
        frame[f"{split}_mse"] = 10000 / (1 + epochs) + 2000 + shift
        frame[f"{split}_accuracy"] = 1 - 1 / (2 + epochs)
    return frame


def test_learning_curves_say_best_epoch_and_use_log_y_for_mse():
    figure = figures.learning_curves(history_frame(), title="t", loss="mse", best_epoch=30)
    loss_axis, accuracy_axis = figure.axes
    assert loss_axis.get_yscale() == "log" and accuracy_axis.get_yscale() == "linear"
    for axis in figure.axes:
        labels = [text.get_text() for text in axis.get_legend().get_texts()]
        assert any("best epoch (weights restored)" in label and "30" in label for label in labels)
        assert not any(label.startswith("kept") for label in labels)


def test_learning_curves_without_early_stopping_mark_no_best_epoch():
    figure = figures.learning_curves(history_frame(), title="t", loss="mse", best_epoch=None)
    labels = [text.get_text() for axis in figure.axes for text in axis.get_legend().get_texts()]
    assert not any("best epoch" in label for label in labels)


# ---- which figure a sweep makes ------------------------------------------------------------------


def test_a_grid_with_no_figure_is_an_error():
    both = SweepConfig.from_params({"both": {"grid": {"activation": ["relu"], "hidden": [4]}, "tasks": ["regression"]}})
    with pytest.raises(ConfigError, match=r"^sweep\.both: no figure"):
        _ = both.spec("both").kind


def lr_sweep_curves() -> pd.DataFrame:
    """Three rates on two folds: a slow one, a fast one, one that diverges (its curve ends high)."""
    rows = []
    for fold in (0, 1):
        for lr, curve in (
            (0.01, 100.0 * np.exp(-np.arange(50) / 40) + 10),
            (0.1, 100.0 * np.exp(-np.arange(50) / 4) + 10),
            (1.0, 100.0 * 10.0 ** np.arange(6)),
        ):
            rows += [{"task": "regression", "lr": lr, "repeat": 0, "fold": fold, "epoch": e, "train_mse": v}
                     for e, v in enumerate(curve)]  # fmt: skip
    return pd.DataFrame(rows)


def test_the_level_and_epochs_to_reach_it_leave_out_the_diverging_rate():
    curves = lr_sweep_curves()
    slowest_low = 100.0 * np.exp(-49 / 40) + 10  # the slow rate's lowest loss: every trained rate reaches 1.1× it
    assert figures.reach_level(curves, "train_mse") == pytest.approx(1.1 * slowest_low)
    reached = figures.epochs_to_level(curves, "train_mse", 50.0).set_index(["lr", "fold"])["epoch"]
    # 100 e^(−e/40) + 10 ≤ 50 first at e = 37 (40 ln 2.5 = 36.65); at lr 0.1: e = 4 (4 ln 2.5 = 3.67)
    assert reached[(0.01, 0)] == 37 and reached[(0.1, 1)] == 4
    assert np.isnan(reached[(1.0, 0)])


def test_the_lr_curves_draw_one_fold_at_every_rate_on_log_axes():
    figure = figures.lr_curves(lr_sweep_curves(), task="regression", metric="mse")
    left, right = figure.axes[:2]
    assert left.get_yscale() == "log" and right.get_yscale() == "log"
    assert len(left.get_lines()) == 3  # one curve per rate, fold 0 only
    assert "never" in " ".join(text.get_text() for text in right.texts)
