"""2.2: loss and accuracy against iterations: where the shipped fit's validation and held-out
curves bottom out against the epoch early stopping kept, and validation − train over folds. No I/O."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from backprop.lab.answers.settings import patience_text
from backprop.lab.answers.wording import found, interval, is_tie, table_number, tie_cell
from backprop.lab.blocks import LABELS, answer_row, figure, fmt, paragraph, section
from backprop.lab.protocol import paired_difference
from backprop.losses import DEFAULT_LOSS, TASKS

# history.csv keeps 6 significant digits: epochs whose values agree to this relative tolerance are
# one minimum "within rounding", whatever the engine's full-precision argmin was.
ROUNDING = 1e-6


def lowest_epochs(curve: pd.Series) -> tuple[int, int]:
    """The first and last epoch at which ``curve`` is at its minimum within the CSV's rounding."""
    low = float(curve.min())
    at = np.flatnonzero(np.abs(curve.to_numpy() - low) <= ROUNDING * abs(low))
    return int(at[0]), int(at[-1])


def curve_facts(history: pd.DataFrame, loss: str, best: int | None) -> dict:
    """Where the shipped fit's validation and held-out curves bottom out (within the CSV's
    rounding; a minimum at the last epoch is censored: the curve was still falling), and train
    against validation at the epoch early stopping kept (its last epoch without early stopping)."""
    val, train = history[f"val_{loss}"], history[f"train_{loss}"]
    kept = len(history) - 1 if best is None else int(best)
    facts = {
        "val_low": lowest_epochs(val),
        "kept": kept,
        "train": float(train.iloc[kept]),
        "val": float(val.iloc[kept]),
    }
    facts["last"] = len(history) - 1
    if "test_accuracy" in history:
        facts["accuracy"] = (float(history["test_accuracy"].iloc[0]), float(history["test_accuracy"].iloc[kept]))
    if f"test_{loss}" in history:
        test = history[f"test_{loss}"]
        facts["test_low"] = lowest_epochs(test)
        facts["test_at_low"], facts["test_at_kept"] = float(test.min()), float(test.iloc[kept])
    return facts


def epochs_text(span: tuple[int, int]) -> str:
    return f"epoch {span[0]}" if span[0] == span[1] else f"epochs {span[0]}–{span[1]} (equal to 6 digits)"


def where_lowest(facts: dict, loss: str) -> str:
    """Where fold 0's validation and held-out curves bottom out, in words, with the size of the
    held-out loss missed at the kept epoch."""
    label = LABELS[loss]
    text = f"validation {label} lowest at {epochs_text(facts['val_low'])}, kept {facts['kept']}"
    if "test_low" not in facts:
        return text
    missed = facts["test_at_kept"] - facts["test_at_low"]
    if facts["test_low"][1] == facts["last"]:
        return text + (
            f"; held-out {label} still falling when training stopped (epoch {facts['last']}), to "
            f"{fmt(facts['test_at_low'], 3)} there: the kept epoch's {fmt(facts['test_at_kept'], 3)} is "
            f"{fmt(missed, 3)} ({fmt(100 * missed / facts['test_at_low'], 2)}%) above it"
        )
    return text + (
        f"; held-out {label} lowest at {epochs_text(facts['test_low'])}: the kept epoch's "
        f"{fmt(facts['test_at_kept'], 3)} is {fmt(missed, 3)} ({fmt(100 * missed / facts['test_at_low'], 2)}%) above "
        f"that minimum {fmt(facts['test_at_low'], 3)}"
    )


def kept_short(facts: dict, loss: str) -> str:
    """``early stopping kept epoch 609; held-out MSE still falling at the last epoch, 1109 (kept
    epoch 1.9% higher)``: ``where_lowest`` in the answers table's few words."""
    text = f"early stopping kept epoch {facts['kept']}"
    if "test_low" not in facts:
        return text
    above = fmt(100 * (facts["test_at_kept"] / facts["test_at_low"] - 1), 2)
    if facts["test_low"][1] == facts["last"]:
        where = f"still falling at the last epoch, {facts['last']}"
    else:
        where = f"lowest at epoch {facts['test_low'][0]}"
    text += f"; held-out {LABELS[loss]} {where} (kept epoch {above}% higher)"
    if "accuracy" in facts:
        start, kept = facts["accuracy"]
        text += f"; held-out accuracy {fmt(start, 3)} → {fmt(kept, 3)} by the kept epoch"
    return text


def spread_short(epochs: list[int]) -> str:
    """``median 609 (range 250 to 1116)``: the epochs early stopping kept over the folds."""
    return f"median {fmt(float(np.median(epochs)), 6).removesuffix('.0')} (range {min(epochs)} to {max(epochs)})"


def gap_across_folds(folds: list[dict], loss: str, ratio: float) -> dict:
    """Validation − train loss at each fold's returned weights, paired by fold, with its interval."""
    val = [f.get(f"val_{loss}", math.nan) if f.get("outcome", "learned") == "learned" else math.nan for f in folds]
    train = [f.get(f"train_{loss}", math.nan) for f in folds]
    return paired_difference(val, train, test_train_ratio=ratio)


def answer_22(histories: dict, scores: dict, configs: dict, ratios: dict | None = None) -> dict:
    blocks, rows = [], []
    for task in TASKS:
        history, folds = histories[task], scores[task]["folds"]
        loss = DEFAULT_LOSS[task]
        val, train = history[f"val_{loss}"], history[f"train_{loss}"]
        shipped = folds[0]
        last = float(val.iloc[-1])
        text = (
            f"**{task.capitalize()}** (the network of repeat 0, fold 0, shipped as `models/{task}`; its test curve "
            f"is its held-out fold): {shipped['epochs_run']} epochs run"
        )
        if shipped["best_epoch"] is not None:
            best = int(shipped["best_epoch"])
            text += (
                f"; {patience_text(configs[task])} restored the weights of epoch {best}, the "
                f"last epoch whose validation {LABELS[loss]} beat the best before it by more than the tolerance "
                f"({fmt(float(val[best]))})"
            )
        else:
            text += " without early stopping: the network is the last epoch's"
        text += (
            f"; at the last epoch train is {fmt(float(train.iloc[-1]))} and validation {fmt(last)}, "
            f"{fmt(100 * (last / float(val.min()) - 1), 2)}% above the lowest validation {LABELS[loss]}."
        )
        if all(f["best_epoch"] is not None for f in folds):
            text += f" Best epochs over all folds: {', '.join(str(f['best_epoch']) for f in folds)}."
        capped = [f for f in folds if f["still_improving"]]
        if capped:
            text += (
                f" In {len(capped)} of {len(folds)} folds the best epoch is the last one: those fits were still "
                "improving when the epoch budget ran out."
            )
        facts = curve_facts(history, loss, shipped["best_epoch"])
        epochs = [f["best_epoch"] if f["best_epoch"] is not None else f["epochs_run"] - 1 for f in folds]
        # Epochs are not scores: a t interval of 5 of them can leave the range; the folds' range is the spread.
        spread = (
            f"median {fmt(float(np.median(epochs)), 6).removesuffix('.0')} (range {min(epochs)} to {max(epochs)} over "
            f"{len(epochs)} folds)"
        )
        gap = gap_across_folds(folds, loss, (ratios or {}).get(task, 0.0))
        budget = f"{len(capped)} of {len(folds)} folds still improving at the {configs[task]['epochs']}-epoch cap"
        if capped:
            budget += " (a lower bound on their epoch)"
        gap_words = found(gap, lower="validation detectably lower", higher="validation detectably higher")
        long = (
            f"Fold 0 ([loss and accuracy curves](#q22)): {where_lowest(facts, loss)}. Validation − train, all "
            f"folds: {gap_words}; {budget}."
        )
        gap_number = f"validation − train {LABELS[loss]}: {interval(gap, 3)}"
        sentence = (
            f"{task.capitalize()}: the epoch early stopping keeps is {spread}. {long} ({gap_number}"
            + (f"; {tie_cell(gap)}" if is_tie(gap) else "")
            + ")"
        )
        gap_short = "validation − train: " + found(gap, lower="validation lower", higher="validation higher")
        short = (
            f"Fold 0 ([curves](#q22)): {kept_short(facts, loss)}. All folds: "
            f"{gap_short}; {len(capped)} of {len(folds)} still improving at the {configs[task]['epochs']}-epoch cap."
        )
        blocks += [
            paragraph(text),
            figure(f"history_{task}.png", f"{task}: loss and accuracy per epoch, train/val/test"),
            paragraph(f"**Answer ({task}):** {sentence}"),
        ]
        rows.append(
            answer_row(
                f"2.2 loss and accuracy vs iterations, {task}",
                "q22",
                short,
                table_number(gap, f"validation − train {LABELS[loss]}") + f"; kept epoch {spread_short(epochs)}",
            )
        )
    blocks.append(
        paragraph(
            "Row e of each curve is the network after e updates; the full curves are `plots/<task>/history.csv` "
            "(and an artifact of the MLflow run), so `dvc plots diff` compares them across experiments."
        )
    )
    return section("2.2 Loss and accuracy as a function of the number of iterations", blocks, "q22", answers=rows)
