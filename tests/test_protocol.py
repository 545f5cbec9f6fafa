"""Outcomes of fits, paired differences with intervals, and conclusions that call ties ties."""

import math

import numpy as np
import pandas as pd
import pytest

from backprop.lab.answers.choices import compared_settings
from backprop.lab.answers.wording import verdict
from backprop.lab.comparisons import settings_compared
from backprop.lab.protocol import (
    OSCILLATION_STRETCH,
    min_detectable_effect,
    outcome,
    paired_difference,
    power_quantile,
    t_quantile,
)

# ---- one crafted validation curve per outcome ------------------------------------------------


def test_a_falling_curve_learned():
    assert outcome(100 / np.arange(1, 50), diverged=False) == "learned"


def test_a_curve_that_never_goes_below_its_start_stalled():
    curve = np.concatenate([[10.0], 10.0 + np.linspace(0, 5, 40)])  # best epoch 0: the untrained weights
    assert outcome(curve, diverged=False) == "stalled"


def test_a_flat_curve_within_noise_stalled():
    assert outcome(10.0 + 1e-9 * np.sin(np.arange(60)), diverged=False) == "stalled"


def test_a_zig_zag_until_training_stops_is_oscillating_even_while_it_improves():
    epochs = np.arange(60)
    curve = 10.0 / (1 + 0.05 * epochs) * (1 + 0.1 * (-1.0) ** epochs)
    assert outcome(curve, diverged=False) == "oscillating"


def test_a_zig_zag_that_dies_down_is_learning():
    # The headline regression run does this: large steps while it learns the mean, then a smooth descent.
    epochs = np.arange(120)
    curve = 10.0 / (1 + 0.05 * epochs)
    curve[10:60] *= 1 + 0.05 * (-1.0) ** np.arange(50)
    assert outcome(curve, diverged=False) == "learned"


def test_a_best_epoch_inside_a_dying_zig_zag_is_oscillating():
    # The 256-unit network at lr 0.01: a zig-zag whose lucky low at epoch 7 stays the best epoch.
    epochs = np.arange(110)
    curve = 2700 + 40 * np.exp(-epochs / 30) * (-1.0) ** epochs - 0.2 * epochs
    curve[:4] = [30000, 8000, 4400, 3100]
    curve[7] = 2650
    assert outcome(curve, diverged=False) == "oscillating"


def test_a_short_zig_zag_at_the_end_is_not_oscillating():
    epochs = np.arange(60)
    curve = 10.0 / (1 + 0.05 * epochs)
    short = OSCILLATION_STRETCH - 3
    curve[-short:] *= 1 + 0.1 * (-1.0) ** np.arange(short)
    assert outcome(curve, diverged=False) == "learned"


def test_the_engine_verdict_of_divergence_wins():
    assert outcome(100 / np.arange(1, 50), diverged=True) == "diverged"


def test_a_fit_equal_to_the_constant_model_has_not_learned():
    falling = 100 / np.arange(1, 50)  # a curve that learned, by its shape alone
    assert outcome(falling, diverged=False) == "learned"
    assert outcome(falling, diverged=False, val_score=5.0, constant_score=5.0) == "no_better_than_constant"
    # within the margin of the constant model: not learned either; past it: learned
    assert outcome(falling, diverged=False, val_score=4.9, constant_score=5.0, margin=0.05) == "no_better_than_constant"
    assert outcome(falling, diverged=False, val_score=4.7, constant_score=5.0, margin=0.05) == "learned"


# ---- intervals ---------------------------------------------------------------------------------


def test_the_paired_interval_matches_a_hand_computed_example():
    # differences 1, 2, 3, 4: mean 2.5, sd √(5/3) = 1.29099, t(0.975, 3) = 3.182, half width
    # 3.182 × 1.29099 / √4 = 2.05397
    result = paired_difference([11, 12, 13, 14], [10, 10, 10, 10])
    assert result["mean"] == 2.5 and result["n"] == 4 and result["wins"] == 0
    assert result["ci_low"] == pytest.approx(2.5 - 2.05397, abs=1e-4)
    assert result["ci_high"] == pytest.approx(2.5 + 2.05397, abs=1e-4)


def test_the_detectable_difference_matches_a_hand_computation():
    # differences 1..5: sd √2.5 = 1.58114; n_test/n_train 0.25: corrected SE 1.58114 × √(1/5 + 0.25)
    # = 1.06066; t(0.975, 4) = 2.776, t(0.8, 4) = 0.941: MDE = 3.717 × 1.06066 = 3.94247
    assert min_detectable_effect(math.sqrt(2.5), 5, 0.25) == pytest.approx(3.94247, abs=1e-4)
    result = paired_difference([2, 3, 4, 5, 6], [1, 1, 1, 1, 1], test_train_ratio=0.25)
    assert result["mde"] == pytest.approx(3.94247, abs=1e-4)
    # the interval's half width is the t(0.975) part of the same corrected SE
    assert result["ci_high"] - result["mean"] == pytest.approx(2.776 * 1.06066, abs=1e-4)
    assert math.isnan(min_detectable_effect(1.0, 1))


def test_the_power_quantile_follows_the_table_and_tends_to_the_normal():
    assert power_quantile(1) == 1.376 and power_quantile(4) == 0.941 and power_quantile(30) == 0.854
    assert power_quantile(1000) == pytest.approx(0.8416, abs=1e-3)


def test_missing_pairs_are_left_out_and_counted():
    result = paired_difference([1.0, math.nan, 3.0, 0.5], [2.0, 1.0, math.nan, 1.5])
    assert result["n"] == 2 and result["wins"] == 2 and result["mean"] == -1.0


def test_the_t_quantile_follows_the_table_and_tends_to_the_normal():
    assert t_quantile(1) == 12.706 and t_quantile(19) == 2.093
    assert t_quantile(60) == pytest.approx(2.000, abs=0.002) and t_quantile(1000) == pytest.approx(1.962, abs=0.002)


# ---- conclusions -------------------------------------------------------------------------------


def crafted_grid(test_mse: dict, val_mse: dict | None = None) -> pd.DataFrame:
    """results.csv rows of an lr sweep: each lr × 5 folds, every fold learned."""
    return pd.DataFrame(
        [
            {"task": "regression", "lr": lr, "repeat": 0, "fold": fold, "test_mse": mse,
             "val_mse": (val_mse or {}).get(lr, 100.0 + i) + fold, "outcome": "learned"}
            for i, (lr, values) in enumerate(test_mse.items())
            for fold, mse in enumerate(values)
        ]
    )  # fmt: skip


def test_a_crafted_tie_states_no_ranking():
    rows = crafted_grid({0.01: [10.0, 12.0, 9.0, 13.0, 11.0], 0.1: [11.0, 11.0, 11.0, 11.0, 11.0]})
    text = compared_settings(settings_compared(rows, "regression", ["lr"], 0.25), "learning rate")
    assert "**lr 0.01**" in text and "no difference detected: lr 0.1" in text
    assert "better" not in text and "worse" not in text


def test_a_setting_better_on_test_than_the_chosen_one_is_named():
    # Chosen on validation (lowest val), but 0.3 is lower on test in every fold and 0.1 higher.
    rows = crafted_grid(
        {0.01: [20.0, 21.0, 22.0, 20.5, 21.0], 0.1: [30.0, 31.0, 32.5, 30.5, 31.0], 0.3: [10.0, 11.0, 10.5, 10.0, 10.5]}
    )
    text = compared_settings(settings_compared(rows, "regression", ["lr"], 0.25), "learning rate")
    assert "detectably better than the best on validation: lr 0.3: 10.5" in text
    assert "detectably worse: lr 0.1: -10.1" in text


def test_each_setting_is_compared_at_its_own_best_lr():
    # relu is best at lr 0.01 (validation), sigmoid at 0.1; compared at those, on test.
    val = {("sigmoid", 0.01): 50.0, ("sigmoid", 0.1): 10.0, ("relu", 0.01): 12.0, ("relu", 0.1): 90.0}
    rows = pd.DataFrame(
        [
            {"task": "regression", "activation": a, "lr": lr, "repeat": 0, "fold": fold, "val_mse": v + fold,
             "test_mse": v + fold, "outcome": "learned"}
            for (a, lr), v in val.items()
            for fold in range(5)
        ]
    )  # fmt: skip
    answer = settings_compared(rows, "regression", ["activation", "lr"], 0.25)
    assert answer["best"] == {"activation": "sigmoid", "lr": 0.1}
    assert [s["point"] for s in answer["settings"]] == [
        {"activation": "sigmoid", "lr": 0.1},
        {"activation": "relu", "lr": 0.01},
    ]
    assert answer["best_minus_other"][0]["mean"] == pytest.approx(-2.0)


def test_a_difference_whose_interval_contains_zero_is_a_tie_in_words():
    tie = paired_difference([1.0, 3.0, 2.0, 2.5], [2.0, 2.0, 2.0, 2.0])
    assert verdict(tie, lower="lower", higher="higher").startswith("no difference detected")
    clear = paired_difference([1.0, 1.1, 0.9, 1.0], [2.0, 2.0, 2.0, 2.0])
    assert verdict(clear, lower="lower", higher="higher").startswith("lower")
