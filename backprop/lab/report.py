"""The report as data: sections of blocks (paragraphs, equations, tables, figures, code) built
from this run's outputs, rendered by two Jinja2 templates as Markdown and as one HTML file (its
texts converted by markdown-it-py, as CommonMark, so the page says what report.md says).

Every number comes from the inputs, except the reference hand-in's two numbers, which are
labelled as such wherever they appear.
"""

from __future__ import annotations

import base64
import functools
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from backprop.lab.protocol import OUTCOMES, paired_difference

REFERENCE_HAND_IN = {"mse": 2858.4015, "accuracy": 0.6107}  # REFERENCE.md: not from this run
LABELS = {"mse": "MSE", "log_loss": "log loss", "accuracy": "accuracy", "r2": "R²", "rmse": "RMSE"}
TEMPLATES = Path(__file__).parent / "templates"


# ---- blocks -----------------------------------------------------------------------------------


def paragraph(text: str) -> dict:
    return {"kind": "p", "text": text}


def equation(tex: str) -> dict:
    return {"kind": "eq", "tex": tex}


def table(header: list[str], rows: list[list[str]], caption: str = "") -> dict:
    return {"kind": "table", "header": header, "rows": rows, "caption": caption}


def figure(name: str, caption: str) -> dict:
    return {"kind": "figure", "name": name, "caption": caption}


def code(text: str) -> dict:
    return {"kind": "code", "text": text}


def section(title: str, blocks: list[dict], anchor: str) -> dict:
    return {"title": title, "blocks": blocks, "anchor": anchor}


# ---- numbers ----------------------------------------------------------------------------------


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}g}"


def mean_std(values) -> str:
    values = np.asarray([v for v in values if v is not None], dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return "n/a"
    if len(values) == 1:
        return fmt(float(values[0]))
    mean, std = float(values.mean()), float(values.std(ddof=1))
    if std <= 1e-9 * max(1.0, abs(mean)):  # identical up to rounding: say so, not "± 1.2e-16"
        std = 0.0
    return f"{fmt(mean)} ± {fmt(std, 2)}"


def outcome_cell(outcomes: pd.Series) -> str:
    """``5 learned`` or ``3 stalled, 2 oscillating``: how the seeds of one value went."""
    counts = outcomes.value_counts()
    return ", ".join(f"{counts[name]} {name}" for name in OUTCOMES if name in counts)


def sweep_stats(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per swept value: seeds, outcome counts, mean/std of each split's final metric, epochs run."""
    grouped = results.groupby("value", sort=False)
    stats = pd.DataFrame(
        {
            "seeds": grouped["seed"].count(),
            "learned": grouped["outcome"].apply(lambda o: int((o == "learned").sum())),
            "outcomes": grouped["outcome"].apply(outcome_cell),
            "diverged": grouped["diverged"].sum().astype(int),
            "stopped_early": grouped["stopped_early"].sum().astype(int),
            "epochs": grouped["epochs_run"].mean(),
        }
    )
    for split in ("train", "val", "test"):
        column = f"{split}_{metric}"
        stats[f"{split}_mean"] = grouped[column].mean()
        stats[f"{split}_std"] = grouped[column].std()
        stats[f"{split}_cell"] = grouped[column].apply(mean_std)
    return stats


def best_row(stats: pd.DataFrame):
    """The value with the lowest mean validation loss among those that learned in every seed."""
    usable = stats[(stats["learned"] == stats["seeds"]) & stats["val_mean"].notna()]
    if usable.empty:
        return None, None
    value = usable["val_mean"].idxmin()
    return value, usable.loc[value]


# ---- sections ---------------------------------------------------------------------------------


def derivation_section() -> dict:
    code_map = table(
        ["step of the derivation", "where the code does it"],
        [
            ["forward pass z = aW + b, a = g(z)", "`MLP._forward` in `backprop/mlp.py`"],
            [
                "output error δ₂ for each (output, loss) pair",
                "`error_*` functions and `HEADS` in `backprop/losses.py`",
            ],
            [
                "∂L/∂W, ∂L/∂b, δ₁ = (δ₂W₂ᵀ) ⊙ g′",
                "`MLP._backward` in `backprop/mlp.py` (one line per equation; ∂L/∂W₁ and ∂L/∂b₁ come from "
                "one product, [X 1]ᵀδ₁ = [Xᵀδ₁; 1ᵀδ₁])",
            ],
            ["g and g′ in terms of a = g(z)", "`ACTIVATIONS` in `backprop/activations.py`"],
            [
                "update θ ← θ − α∇θL",
                "`MLP._batch_step` in `backprop/mlp.py` (`self._theta -= step * ws.grad_vector`)",
            ],
        ],
    )
    return section(
        "1. Derivation: backpropagation for one sigmoid hidden layer",
        [
            paragraph(
                "A batch of n rows. Shapes as in the code: X (n, f), W₁ (f, h), b₁ (h), W₂ (h, 1), b₂ (1). "
                "Forward pass of the regression network (sigmoid hidden layer, identity output):"
            ),
            equation(r"z_1 = X W_1 + b_1,\quad a_1 = \sigma(z_1),\quad \hat{y} = z_2 = a_1 W_2 + b_2"),
            paragraph("Mean squared error over the batch:"),
            equation(r"L = \dfrac{1}{n}\sum_{i=1}^{n}(\hat{y}_i - y_i)^2"),
            paragraph(
                "Chain rule from the loss back. The output error is the derivative of L with respect to the "
                "output's pre-activation z₂; with the identity output ŷ = z₂, so:"
            ),
            equation(r"\delta_2 = \dfrac{\partial L}{\partial z_2} = \dfrac{2}{n}(\hat{y} - y)\quad (n, 1)"),
            paragraph("z₂ is linear in W₂ and b₂, so their gradients collect δ₂ over the rows:"),
            equation(
                r"\dfrac{\partial L}{\partial W_2} = a_1^{T}\delta_2\ (h, 1),\quad"
                r" \dfrac{\partial L}{\partial b_2} = \sum_{i}\delta_{2,i}\ (1)"
            ),
            paragraph(
                "The error reaches the hidden layer through W₂ and is scaled by the sigmoid's slope, "
                "σ′(z) = σ(z)(1 − σ(z)) = a₁(1 − a₁), elementwise (⊙):"
            ),
            equation(r"\delta_1 = (\delta_2 W_2^{T}) \odot a_1 \odot (1 - a_1)\quad (n, h)"),
            equation(
                r"\dfrac{\partial L}{\partial W_1} = X^{T}\delta_1\ (f, h),\quad"
                r" \dfrac{\partial L}{\partial b_1} = \sum_{i}\delta_{1,i}\ (h)"
            ),
            paragraph("Gradient descent with learning rate α, full batch or mini-batch, repeated over epochs:"),
            equation(
                r"W \leftarrow W - \alpha\,\dfrac{\partial L}{\partial W},\quad"
                r" b \leftarrow b - \alpha\,\dfrac{\partial L}{\partial b}"
            ),
            paragraph(
                "**Binary classification with log loss.** The output becomes ŷ = σ(z₂) and the loss is the "
                "log loss below. Its derivative −(y/ŷ − (1 − y)/(1 − ŷ))/n, times the output slope ŷ(1 − ŷ), "
                "simplifies: σ′ cancels and the output error has the same form as for regression, without the 2:"
            ),
            equation(r"L = -\dfrac{1}{n}\sum_{i}\left[y_i\log\hat{y}_i + (1 - y_i)\log(1 - \hat{y}_i)\right]"),
            equation(r"\delta_2 = \dfrac{1}{n}(\hat{y} - y)"),
            paragraph(
                "That is the only difference between the two update rules: the output activation, the loss and "
                "therefore δ₂. Everything from δ₂ backwards (∂L/∂W₂, δ₁, ∂L/∂W₁, the update) is identical. "
                "The code computes the log loss from the logit z₂ as log(1 + e^z₂) − y·z₂, which never takes log(0)."
            ),
            paragraph(
                "**Why not MSE on a sigmoid output?** Then σ′ does not cancel and the error term keeps the factor "
                "ŷ(1 − ŷ), which is near 0 whenever the output saturates, also when it is confidently wrong: "
                "learning stalls exactly where it is needed. Section 3 measures this."
            ),
            equation(r"\delta_2 = \dfrac{2}{n}(\hat{y} - y)\,\hat{y}(1 - \hat{y})"),
            code_map,
            paragraph(
                "`tests/test_gradients.py` checks every gradient of every (activation, output, loss) combination, "
                "with one and two hidden layers, against central finite differences (relative error < 1e-6 in "
                "float64), and `tests/test_mlp.py` works one gradient step by hand."
            ),
        ],
        "derivation",
    )


def _task_rows(task: str, baselines: dict, protocol_note: str) -> tuple[list[str], list[list[str]]]:
    metric_names = ["mse", "accuracy", "r2"] if task == "regression" else ["log_loss", "accuracy"]
    base = baselines[task]
    n_seeds = len(base["ours_held_out"])
    linear = "ordinary least squares" if task == "regression" else "logistic regression (no penalty)"
    sklearn = (
        "scikit-learn MLP"
        + ("Regressor" if task == "regression" else "Classifier")
        + ", same settings but no early stopping (all epochs)"
    )
    rows = []
    if task == "regression":
        rows.append(
            [
                "reference hand-in (**not from this run**)",
                protocol_note,
                fmt(REFERENCE_HAND_IN["mse"]),
                fmt(REFERENCE_HAND_IN["accuracy"]),
                "not reported",
            ]
        )

    def cells(scores):
        return [fmt(scores.get(m)) if scores else "n/a" for m in metric_names]

    def seeds_cells(runs, split="test"):
        return (
            [mean_std(run[split].get(m) for run in runs) for m in metric_names] if runs else ["n/a"] * len(metric_names)
        )

    rows += [
        ["this network", protocol_note, *cells(base["ours_all_rows"])],
        [linear, protocol_note, *cells(base["linear_all_rows"])],
        [sklearn, protocol_note, *cells(base["sklearn_all_rows"])],
        [
            "this network",
            f"held-out test, mean ± std over {n_seeds} seeds",
            *seeds_cells(base["ours_held_out"]),
        ],
        [linear, "held-out test", *cells(base["linear_held_out"]["test"])],
        [
            sklearn,
            f"held-out test, mean ± std over {len(base['sklearn_held_out'])} seeds",
            *seeds_cells(base["sklearn_held_out"]),
        ],
        ["constant (train mean / class prior)", "held-out test", *cells(base["constant_held_out"]["test"])],
    ]
    return ["model", "protocol", *[LABELS[m] for m in metric_names]], rows


def answer_21(baselines: dict, schemas: dict) -> dict:
    blocks = []
    for task in ("regression", "classification"):
        schema = schemas[task]
        rows_all = schema["rows"]["all"]
        header, rows = _task_rows(task, baselines, f"fit and scored on all {rows_all} rows")
        config = baselines[task]["config"]
        blocks.append(
            paragraph(
                f"**{task.capitalize()}**: `{schema['source']}` ({rows_all} rows, {len(schema['features'])} features, "
                f"target `{schema['target']}`); split {schema['rows']['train']} train / {schema['rows']['val']} val / "
                f"{schema['rows']['test']} test. Network: hidden {config['hidden']}, {config['activation']}, "
                f"lr {config['lr']}, {config['epochs']} epochs, batch {config['batch_size'] or 'full'}, "
                f"early stopping patience {config['patience']} on the held-out protocol."
            )
        )
        blocks.append(table(header, rows))
        ours = baselines[task]["ours_held_out"]
        split_rows = []
        for split in ("train", "val", "test"):
            split_rows.append([split, *[mean_std(run[split].get(m) for run in ours) for m in ours[0][split]]])
        blocks.append(
            table(
                ["this network, split", *[LABELS[m] for m in ours[0]["train"]]],
                split_rows,
                f"{task}: all three splits, mean ± std over {len(ours)} seeds",
            )
        )
    reg = baselines["regression"]
    ours_all = reg["ours_all_rows"]
    test_mse = [run["test"]["mse"] for run in reg["ours_held_out"]]
    linear_test = reg["linear_held_out"]["test"]["mse"]
    change = (np.nanmean(test_mse) - linear_test) / linear_test
    all_rows_change = (ours_all["mse"] - reg["linear_all_rows"]["mse"]) / reg["linear_all_rows"]["mse"]
    blocks += [
        paragraph(
            "**Accuracy for regression** is 1 − mean(|y − ŷ| / |y|), one minus the mean absolute percentage error, "
            "as in the reference hand-in. It hides a lot: it is not a probability (it can be negative), it weighs "
            "an error of 30 on a target of 50 six times more than the same error on 300, and a model that predicts "
            f"the training mean already scores {fmt(reg['constant_held_out']['test'].get('accuracy'))} on the test "
            "split. MSE and R² are the honest measures; R² is 1 − MSE / variance of y."
        ),
        paragraph(
            f"**What the numbers say.** Fitted and scored on all rows, the network reaches MSE {fmt(ours_all['mse'])} "
            f"against {fmt(reg['linear_all_rows']['mse'])} for least squares, which is where the reference hand-in "
            f"stopped ({fmt(REFERENCE_HAND_IN['mse'])}): the reference network did not get past a linear fit. But "
            f"that protocol rewards memorisation: there the network is {abs(all_rows_change):.0%} "
            f"{'below' if all_rows_change < 0 else 'above'} least squares. On held-out rows its test MSE is "
            f"{mean_std(test_mse)} against {fmt(linear_test)} for least squares, {abs(change):.0%} "
            f"{'lower' if change < 0 else 'higher'} on average: {held_out_verdict(test_mse, linear_test)}."
        ),
    ]
    return section("2.1 Average MSE and accuracy", blocks, "q21")


def held_out_verdict(test_mse: list[float], linear_test: float) -> str:
    """The network against least squares on the one test split: a difference only where the 95%
    interval over seeds excludes 0, and said to cover initial weights only."""
    comparison = paired_difference(test_mse, [linear_test] * len(test_mse))
    low, high = comparison["ci_low"], comparison["ci_high"]
    interval = f"difference {fmt(comparison['mean'])}, 95% interval over seeds {fmt(low)} to {fmt(high)}"
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 <= high:
        finding = "no difference detected"
    else:
        finding = "lower than least squares" if high < 0 else "higher than least squares"
    return (
        f"{finding} ({interval}). That interval covers the initial weights only, not which 88 rows happened to be "
        "the test split, so it is narrower than the uncertainty a reader should assume; cross-validation is the "
        "next step"
    )


def answer_22(histories: dict, summaries: dict, config: dict) -> dict:
    blocks = []
    for task in ("regression", "classification"):
        history, summary = histories[task], summaries[task]
        loss = "mse" if task == "regression" else "log_loss"
        val, train = history[f"val_{loss}"], history[f"train_{loss}"]
        best = int(val.idxmin())
        text = (
            f"**{task.capitalize()}**: {summary['epochs_run']} epochs run. Validation {LABELS[loss]} is lowest "
            f"at epoch {best} ({fmt(float(val[best]))}); at the last epoch train is {fmt(float(train.iloc[-1]))} and "
            f"validation {fmt(float(val.iloc[-1]))}."
        )
        if summary.get("stopped_early"):
            text += (
                f" Early stopping (patience {config[task]['patience']}) ended training and restored the "
                f"weights of epoch {summary['best_epoch']} (marked in the figure)."
            )
        if float(val.iloc[-1]) > float(val[best]) * 1.02:
            text += " Validation loss rising while training loss keeps falling is overfitting."
        blocks += [
            paragraph(text),
            figure(f"history_{task}.png", f"{task}: loss and accuracy per epoch, train/val/test"),
        ]
    blocks.append(
        paragraph(
            "Row e of each curve is the model after e updates; the full curves are `plots/<task>/history.csv` "
            "(and an artifact of the MLflow run), so `dvc plots diff` compares them across experiments."
        )
    )
    return section("2.2 Loss and accuracy as a function of the number of iterations", blocks, "q22")


def sweep_table(stats: pd.DataFrame, name: str, metric: str) -> dict:
    rows = [
        [
            fmt(value) if not isinstance(value, str) else value,
            row["train_cell"],
            row["val_cell"],
            row["test_cell"],
            row["outcomes"],
            fmt(float(row["epochs"])),
        ]
        for value, row in stats.iterrows()
    ]
    label = LABELS[metric]
    return table([name, f"train {label}", f"val {label}", f"test {label}", "seeds by outcome", "mean epochs run"], rows)


def _values(values) -> str:
    return ", ".join(fmt(v) if not isinstance(v, str) else v for v in values)


def lr_conclusion(stats: pd.DataFrame, epochs: int) -> str:
    best, row = best_row(stats)
    if best is None:
        return "No learning rate learned in every seed."
    text = (
        f"Lowest mean val MSE among the rates that learned in every seed: **{fmt(best)}** "
        f"(val MSE {row['val_cell']}, test MSE {row['test_cell']})."
    )
    diverged = stats[stats["diverged"] > 0]
    failed = stats[(stats["diverged"] == 0) & (stats["learned"] < stats["seeds"])]
    slow = stats[
        (stats["learned"] == stats["seeds"])
        & (stats["val_mean"] <= 2 * row["val_mean"])
        & (stats["val_mean"] > 1.1 * row["val_mean"])
        & (stats["epochs"] >= epochs)
    ]
    if len(slow):
        text += (
            f" Too small: {_values(slow.index)} still had a val MSE over 10% above the best after all {epochs} epochs."
        )
    if len(failed):
        counts = "; ".join(f"{fmt(v)}: {r['outcomes']}" for v, r in failed.iterrows())
        text += (
            f" Not a trained result in every seed (stalled: never below the starting val loss, so the "
            f"untrained weights; oscillating: the loss zig-zags, a step past the stable limit): {counts}."
        )
    if len(diverged):
        counts = ", ".join(f"{fmt(v)} in {r['diverged']}/{r['seeds']} seeds" for v, r in diverged.iterrows())
        text += f" Diverged (loss overflowed, recorded as a result): {counts}."
    return text


def hidden_conclusion(stats: pd.DataFrame) -> str:
    best, row = best_row(stats)
    if best is None:
        return "No width learned in every seed."
    usable = stats[stats["learned"] == stats["seeds"]]
    enough = usable[usable["val_mean"] <= 1.05 * row["val_mean"]].index[0]
    first, last = usable.index[0], usable.index[-1]
    text = (
        f"Lowest mean val MSE among the widths that learned in every seed: **{fmt(best)}** hidden units "
        f"(val MSE {row['val_cell']}, test MSE {row['test_cell']})."
    )
    if enough != best:
        text += f" {fmt(enough)} units already come within 5% of that validation MSE."
    text += (
        f" From {fmt(first)} to {fmt(last)} units, train MSE goes from {usable.loc[first, 'train_cell']} to "
        f"{usable.loc[last, 'train_cell']} (lowest at {fmt(usable['train_mean'].idxmin())} units) and test MSE from "
        f"{usable.loc[first, 'test_cell']} to {usable.loc[last, 'test_cell']} (lowest at "
        f"{fmt(usable['test_mean'].idxmin())} units); these are means over seeds, and which of them differ "
        "beyond the seeds' spread is stated below. Early stopping ends each width at its own epoch, so these "
        "numbers mix capacity with when training stopped; a fixed-budget width sweep would separate them."
    )
    return text


def activation_conclusion(stats_by_task: dict[str, pd.DataFrame], metrics: dict[str, str]) -> str:
    parts = []
    for task, stats in stats_by_task.items():
        ranked = stats[stats["learned"] == stats["seeds"]].sort_values("val_mean")
        order = " < ".join(f"{value} ({row['val_cell']})" for value, row in ranked.iterrows())
        parts.append(f"**{task}**, val {LABELS[metrics[task]]} from lowest to highest mean: {order}")
        failed = stats[stats["learned"] < stats["seeds"]]
        if len(failed):
            counts = ", ".join(f"{value} ({r['outcomes']})" for value, r in failed.iterrows())
            parts[-1] += f"; not learned in every seed at the shared learning rate: {counts}"
    return ". ".join(parts) + "."


def chosen_against_the_others(rows: pd.DataFrame, stats: pd.DataFrame, metric: str, name: str) -> str | None:
    """The value chosen on validation against every other value that learned in every seed, on
    test, paired seed by seed on the same held-out rows: which are detectably better or worse
    (95% interval of the difference excluding 0) and which are ties. A ranking against the
    runner-up alone could hide a value that is better on test."""
    usable = stats[(stats["learned"] == stats["seeds"]) & stats["val_mean"].notna()].sort_values("val_mean")
    if len(usable) < 2:
        return None
    chosen = usable.index[0]
    by_seed = rows.pivot_table(index="seed", columns="value", values=f"test_{metric}", aggfunc="first")
    better, worse, ties = [], [], []
    for other in usable.index[1:]:
        comparison = paired_difference(by_seed[other], by_seed[chosen])
        label = f"{other if isinstance(other, str) else fmt(other)} ({fmt(comparison['mean'], 3)}, "
        label += f"{fmt(comparison['ci_low'], 3)} to {fmt(comparison['ci_high'], 3)})"
        low, high = comparison["ci_low"], comparison["ci_high"]
        (better if high < 0 else worse if low > 0 else ties).append(label)
    chosen_label = chosen if isinstance(chosen, str) else fmt(chosen)
    parts = [
        f"Chosen on validation: {name} = {chosen_label}. Against every other value that learned in every seed, "
        f"on test {LABELS[metric]} (difference other − chosen, paired by seed, 95% interval; {len(by_seed)} seeds "
        "on one split, so the interval covers initial weights only, not the sampling of the data)"
    ]
    if better:
        parts.append(f"detectably better than the chosen value: {'; '.join(better)}")
    if worse:
        parts.append(f"detectably worse: {'; '.join(worse)}")
    if ties:
        parts.append(f"no difference detected: {'; '.join(ties)}")
    return parts[0] + ": " + "; ".join(parts[1:]) + "."


def first_epoch_reaching(curves: pd.DataFrame, column: str, level: float) -> int | None:
    mean = curves.groupby("epoch")[column].mean()
    reached = mean[mean >= level]
    return int(reached.index[0]) if len(reached) else None


def loss_conclusion(stats: pd.DataFrame, curves: pd.DataFrame, level: float = 0.95) -> str:
    parts = []
    for value, row in stats.iterrows():
        rows = curves[curves["value"] == value]
        reached = first_epoch_reaching(rows, "val_accuracy", level)
        reach = (
            f"mean val accuracy reaches {level} at epoch {reached}"
            if reached is not None
            else f"mean val accuracy never reaches {level}"
        )
        accuracy = row.get("val_accuracy_cell", "n/a")
        parts.append(
            f"trained on **{value}**: val log loss at the best epoch {row['val_cell']}, "
            f"val accuracy {accuracy}; {reach}"
        )
    return "; ".join(parts) + ". Both are scored with log loss so that they share one scale."


def sweep_section(
    number: str, title: str, name: str, results: pd.DataFrame, curves: pd.DataFrame, epochs: int, anchor: str
) -> dict:
    metrics = {"regression": "mse", "classification": "log_loss"}
    blocks = []
    stats_by_task = {}
    for task, rows in results.groupby("task", sort=False):
        stats = sweep_stats(rows, metrics[task])
        stats["val_accuracy_cell"] = rows.groupby("value", sort=False)["val_accuracy"].apply(mean_std)
        stats_by_task[task] = stats
    seeds = results["seed"].nunique()
    blocks.append(
        paragraph(
            f"Each value trained with {seeds} seeds (different initial weights, same split); all other settings from "
            f"`train` in params.yaml. Means ± standard deviations over seeds; held-out numbers are on validation "
            f"(used to pick the best value) and test (reported, never used for choosing)."
        )
    )
    if name == "lr":
        blocks.append(paragraph(lr_conclusion(stats_by_task["regression"], epochs)))
    elif name == "hidden":
        blocks.append(paragraph(hidden_conclusion(stats_by_task["regression"])))
    elif name == "activation":
        blocks.append(paragraph(activation_conclusion(stats_by_task, metrics)))
    elif name == "loss":
        blocks.append(paragraph(loss_conclusion(stats_by_task["classification"], curves)))
    for task, rows in results.groupby("task", sort=False):
        sentence = chosen_against_the_others(rows, stats_by_task[task], metrics[task], name)
        if sentence:
            blocks.append(paragraph(f"**{task}**: {sentence}" if len(stats_by_task) > 1 else sentence))
    blocks += [
        figure(
            f"sweep_{name}_summary.png",
            f"train/val/test metric of the returned model (best epoch) against {name}, mean ± std over seeds",
        ),
        figure(
            f"sweep_{name}_curves.png",
            f"validation curves per {name}: mean over the seeds still training (a step is a seed stopping), "
            "min–max band, train dotted",
        ),
    ]
    for task, stats in stats_by_task.items():
        blocks.append(paragraph(f"*{task}*"))
        blocks.append(sweep_table(stats, name, metrics[task]))
    return section(f"{number} {title}", blocks, anchor)


def provenance_section(info: dict) -> dict:
    """How to find this report's MLflow runs and what it was made from; no run id, commit or time,
    so the same code, params and data give the same section on any machine and clone."""
    runs = [["train", task, f"`{run_filter}`"] for task, run_filter in info["train_runs"].items()]
    runs += [
        [f"sweep {name} (parent)", f"{count} child runs", f"`{run_filter}`"]
        for name, (run_filter, count) in info["sweep_runs"].items()
    ]
    runs.append(["baselines (parent)", f"{info['baseline_children']} child runs", f"`{info['baselines_run']}`"])
    data_rows = [[s["source"], f"`{s['sha256'][:16]}…`", str(s["rows"]["all"])] for s in info["schemas"].values()]
    experiment = info["experiment"]
    return section(
        "4. Provenance",
        [
            paragraph(
                f"MLflow store: `{info['tracking_uri']}`, experiment `{experiment}`. Every run carries the tag "
                f"`{info['digest_tag']}`, a digest of its stage's code, params and input data (what `dvc.yaml` "
                "declares for the stage), so the same inputs give the same filter on any machine. Find a run with "
                f'`mlflow.search_runs(experiment_names=["{experiment}"], filter_string=...)` and its filter below, '
                "or paste the filter into the search box of the UI; a stage run again with the same inputs adds a "
                "run with the same filter, and the latest is the one these outputs come from. "
                "`runs/sweep_<name>.json` also holds the filter of each sweep's child runs."
            ),
            table(["MLflow run", "what", "filter string"], runs),
            paragraph(
                f"This report's own digest (its code, params and inputs, which hold the digests above): "
                f"`{info['digest']}`."
            ),
            table(["data", "sha256", "rows"], data_rows),
            table(["package", "version"], [[name, version] for name, version in info["versions"].items()]),
            paragraph(
                "Open the runs with `make ui` and http://127.0.0.1:5000 (the UI binds to this machine only). "
                "Every figure here is also attached to its run under `figures/`."
            ),
            paragraph("The parameters of this run (`params.yaml`):"),
            code(info["params_yaml"]),
        ],
        "provenance",
    )


@dataclass
class ReportInputs:
    baselines: dict
    schemas: dict
    histories: dict
    summaries: dict
    train_config: dict
    sweeps: dict  # name -> (results, curves)
    epochs: int
    provenance: dict


def build(inputs: ReportInputs) -> dict:
    titles = {
        "lr": ("2.3", "The effect of the learning rate", "q23"),
        "hidden": ("2.4", "The effect of the number of hidden neurons", "q24"),
        "activation": ("2.5", "The effect of the activation function", "q25"),
        "loss": ("3.", "MSE versus log loss for classification", "loss"),
    }
    sections = [
        derivation_section(),
        answer_21(inputs.baselines, inputs.schemas),
        answer_22(inputs.histories, inputs.summaries, inputs.train_config),
    ]
    for name, (results, curves) in inputs.sweeps.items():
        number, title, anchor = titles[name]
        sections.append(sweep_section(number, title, name, results, curves, inputs.epochs, anchor))
    sections.append(provenance_section(inputs.provenance))
    return {
        "title": "backprop-lab report: a 3-layer network trained by hand-written backpropagation",
        "sections": sections,
    }


# ---- rendering --------------------------------------------------------------------------------


@functools.cache
def _markdown():
    """markdown-it-py with CommonMark and tables, the Markdown that report.md is read as (GitHub,
    GitLab). Raw HTML inside a text is shown as text, never passed through."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown_html(text: str) -> str:
    """A paragraph's Markdown as HTML block(s), exactly as report.md holds it."""
    return _markdown().render(text).rstrip("\n")


def inline_markdown_html(text: str) -> str:
    """Inline Markdown (a table cell, a caption) as HTML, with no enclosing paragraph."""
    return _markdown().renderInline(text)


def equation_png(tex: str) -> str:
    """A display equation as a PNG data URI, drawn by matplotlib's mathtext: no network, no MathJax."""
    from matplotlib import mathtext

    buffer = io.BytesIO()
    mathtext.math_to_image(f"${tex}$", buffer, dpi=150, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_markdown(document: dict, figures_folder: str) -> str:
    return _environment().get_template("report.md.j2").render(doc=document, figures=figures_folder)


def render_html(document: dict, figure_bytes: dict[str, bytes]) -> str:
    import markupsafe

    images = {name: "data:image/png;base64," + base64.b64encode(data).decode() for name, data in figure_bytes.items()}
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            doc=document,
            images=images,
            markdown=lambda text: markupsafe.Markup(markdown_html(text)),
            inline=lambda text: markupsafe.Markup(inline_markdown_html(text)),
            equation=equation_png,
        )
    )
