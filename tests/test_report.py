"""The report of a tiny pipeline run: complete, self-contained, and made of this run's numbers."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backprop.lab.answers.q22 import curve_facts, lowest_epochs, where_lowest
from backprop.lab.answers.stability import activation_rms
from backprop.lab.answers.wording import interval, metric_bounds, short_interval, verdict, whole
from backprop.lab.blocks import REFERENCE_DATA_SHA256, REFERENCE_HAND_IN, code, fmt, paragraph, section, table
from backprop.lab.comparisons import (
    against_baselines,
    best_vs_baseline,
    capacity,
    each_minus_headline,
    epochs_at_chosen_lr,
    failures,
    headline_vs_tuned,
    loss_mechanism,
    settings_compared,
)
from backprop.lab.config import load_sweep, load_train, read_params
from backprop.lab.protocol import mean_interval, overlap_ratio
from backprop.lab.report import ReportInputs, build, render_html, render_markdown
from backprop.lab.sweeps import cell, summarise
from backprop.lab.training import cv_scores
from backprop.losses import DEFAULT_LOSS, TASKS
from backprop.metrics import SUMMARY_METRICS

HEADINGS = [
    "Answers",
    "1. Derivation",
    "2.1 Average MSE and accuracy",
    "2.2 Loss and accuracy as a function of the number of iterations",
    "2.3 The effect of the learning rate",
    "2.4 The effect of the number of hidden neurons",
    "2.5 The effect of the activation function",
    "3. MSE versus log loss for classification",
    "4. Provenance",
]


@pytest.mark.e2e
def test_both_files_have_every_section(tiny_repo):
    markdown = (tiny_repo / "report" / "report.md").read_text()
    page = (tiny_repo / "report" / "report.html").read_text()
    for heading in HEADINGS:
        assert re.search(rf"^## {re.escape(heading)}", markdown, re.M), heading
        assert f"<h2>{heading}" in page, heading
    assert "$$" in markdown  # math for GitHub/GitLab
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (tiny_repo / "report" / figure).resolve().is_file(), figure


@pytest.mark.e2e
def test_html_is_self_contained_and_embeds_every_figure(tiny_repo):
    page = (tiny_repo / "report" / "report.html").read_text()
    attributes = re.findall(r'<(script|link|img|source|iframe|object|embed)\b[^>]*?\b(?:src|href)="([^"]*)"', page)
    assert attributes, "no embedded resources found at all"
    for tag, url in attributes:
        assert url.startswith("data:"), f"<{tag}> loads {url[:60]}"
    assert "<script" not in page and "@import" not in page and "url(" not in page
    figures = len(list((tiny_repo / "report" / "figures").glob("*.png")))
    figure_tags = re.findall(r'<figure><img src="data:image/png;base64,', page)
    assert len(figure_tags) == figures


def test_the_html_texts_are_markdown_it_commonmark():
    """Texts go through markdown-it-py: CommonMark emphasis and code spans, tables' cells inline,
    raw HTML shown as text, never passed through."""
    document = {
        "title": "t",
        "sections": [
            section(
                "S",
                [
                    paragraph("**bold**, *it*, `a*b*c`, ``tags.`x` = 'y'``, snake_case_name, 2 * 3 * 4 <script>"),
                    table(["*h*"], [["`c`"]], caption="*cap*"),
                    code("a: <b>"),
                ],
                "s",
            )
        ],
    }
    page = render_html(document, {})
    assert (
        "<p><strong>bold</strong>, <em>it</em>, <code>a*b*c</code>, <code>tags.`x` = 'y'</code>, snake_case_name, "
        "2 * 3 * 4 &lt;script&gt;</p>"
    ) in page
    assert "<th><em>h</em></th>" in page and "<td><code>c</code></td>" in page and "<em>cap</em></caption>" in page
    assert "<pre><code>a: &lt;b&gt;</code></pre>" in page and "<script>" not in page


def table_rows(markdown: str, after: str) -> list[list[str]]:
    block = markdown.split(after, 1)[1]
    rows = []
    for line in block.splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[2:]  # header and separator


@pytest.mark.e2e
def test_every_number_in_the_21_table_comes_from_this_run(tiny_repo):
    markdown = (tiny_repo / "report" / "report.md").read_text()
    baselines = json.loads((tiny_repo / "metrics" / "baselines.json").read_text())
    scores = json.loads((tiny_repo / "metrics" / "regression-scores.json").read_text())
    folds = len(scores["folds"])
    schema = json.loads((tiny_repo / "data/prepared/regression/schema.json").read_text())
    held_out = pd.DataFrame(baselines["held_out"])
    linear = held_out[(held_out["task"] == "regression") & (held_out["model"] == "linear")]
    every_row = baselines["all_rows"]["regression"]
    cv = f"held-out folds, mean (95% CI) over {folds}"
    metrics = ("mse", "accuracy", "r2")
    expected = {
        ("this network", cv): [
            interval(scores["summary"][f"test_{m}"], bounds=metric_bounds(m, "regression")) for m in metrics
        ],
        ("ordinary least squares", cv): [
            interval(
                mean_interval(linear[f"test_{m}"], overlap_ratio(schema["fold_rows"])),
                bounds=metric_bounds(m, "regression"),
            )
            for m in metrics
        ],
        ("this network (no early stopping)", "fit and scored on all 442 rows"): [
            fmt(every_row["ours"][m]) for m in metrics
        ],
        ("ordinary least squares", "fit and scored on all 442 rows"): [fmt(every_row["linear"][m]) for m in metrics],
        ("reference hand-in (**not from this run**)", "fit and scored on all 442 rows"): [
            fmt(REFERENCE_HAND_IN["mse"]),
            fmt(REFERENCE_HAND_IN["accuracy"]),
            "not reported",
        ],
    }
    rows = {(row[0], row[1]): row[2:] for row in table_rows(markdown, "## 2.1 Average MSE and accuracy")}
    for key, cells in expected.items():
        assert rows[key] == cells, key
    # The conclusion under the table is the paired comparison of metrics/comparison.json, in words.
    versus = json.loads((tiny_repo / "metrics" / "comparison.json").read_text())["regression"]["network_vs_linear"]
    sentence = verdict(versus, lower="lower", higher="higher")
    assert f"against ordinary least squares, {sentence}" in markdown


@pytest.mark.e2e
def test_the_page_renders_in_headless_chromium(tiny_repo, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium where apt-get works)")
    # The report has no script of its own; a copy gets one that reports on every image after load.
    probe = """<script>
    window.addEventListener("load", () => {
      const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length;
      document.body.setAttribute("data-probe", `images=${document.images.length} broken=${broken}`);
    });
    </script></body>"""
    page = (tiny_repo / "report" / "report.html").read_text().replace("</body>", probe)
    (tmp_path / "probe.html").write_text(page)
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            f"file://{tmp_path / 'probe.html'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    probe_result = re.search(r'data-probe="images=(\d+) broken=(\d+)"', result.stdout)
    assert probe_result, result.stdout[-500:]
    images, broken = map(int, probe_result.groups())
    assert images > 10 and broken == 0
    console_errors = [
        line for line in result.stderr.splitlines() if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)
    ]
    assert not console_errors, console_errors


# ---- the report built in-process on crafted inputs ---------------------------------------------

PARAMS = Path(__file__).resolve().parent.parent / "params.yaml"
QUESTIONS = ["the update rule", "2.1", "2.2", "2.3", "2.4", "2.5", "3."]
INTERVAL = re.compile(r"-?[\d.]+ \((range )?-?[\d.e+-]+ to -?[\d.e+-]+")
DIABETES_TEXT = ["reference hand-in", "2858", "25 to 346", "level of a linear fit", "0.6107"]


def _metrics(task, rng, level, effect):
    """One fit's scores on train, val and test: a level, an effect and the fold's noise."""
    if task == "regression":
        mse = {split: level * (1 + effect) + rng.normal(0, 0.05 * level) for split in ("train", "val", "test")}
        return {f"{s}_{m}": v for s in mse for m, v in
                (("mse", mse[s]), ("rmse", mse[s] ** 0.5), ("r2", 1 - mse[s] / 6000), ("accuracy", 0.6))}  # fmt: skip
    loss = {split: 0.1 * (1 + effect) + rng.normal(0, 0.01) for split in ("train", "val", "test")}
    return {f"{s}_{m}": v for s in loss for m, v in (("log_loss", loss[s]), ("accuracy", 0.97))}


def _fit_row(task, point, fold, rng, effect, reach=()):
    row = {"task": task} | point | {"repeat": 0, "fold": fold, "seed": fold, "epochs_run": 300}
    row |= {"best_epoch": 150 + fold, "still_improving": False, "diverged_epoch": None, "outcome": "learned"}
    row |= {"peak_train_loss_ratio": 1.0, "peak_train_loss_epoch": 0, "saturated_units": 0.0, "dead_units": np.nan}
    row |= {f"reach_{curve}": 20 + rng.integers(0, 5) for curve in reach}
    return row | _metrics(task, rng, 3000.0, effect)


def _fail(row: dict, fold: int, name: str, point: dict, top: dict) -> dict:
    """``crafted_inputs(failing=True)``: the lr sweep learns at its second-largest rate after a
    catapult and diverges at its largest; the hidden sweep's widest layer at its largest rate blows
    up (2 stalled at their start, 2 moved and collapsed to the constant model, 1 diverged)."""
    if name == "lr" and point["lr"] == top["lr"]:
        return row | {"outcome": "diverged", "diverged_epoch": 3, "best_epoch": None, "saturated_units": np.nan}
    if name == "lr" and point["lr"] == top["lr_below"]:
        return row | {"peak_train_loss_ratio": 40.0 + fold, "peak_train_loss_epoch": 4}
    if name == "hidden" and point["hidden"] == top["hidden"] and point["lr"] == top["lr"]:
        if fold < 2:
            return row | {"outcome": "stalled", "best_epoch": 0, "peak_train_loss_ratio": 7.8e5 - fold * 1e5}
        if fold < 4:
            return row | {"outcome": "no_better_than_constant", "best_epoch": 40, "peak_train_loss_ratio": 9e4,
                          "saturated_units": 1.0, "sharpness_end": 2.003}  # fmt: skip
        return row | {"outcome": "diverged", "diverged_epoch": 2, "best_epoch": None, "saturated_units": np.nan}
    return row


def crafted_inputs(*, sha256: str, effect: float = 0.0, seed: int = 0, failing: bool = False) -> ReportInputs:
    """Every input of ``report.build``, made by the pipeline's own pure functions from crafted
    fits: 5 folds, each sweep of params.yaml; ``effect`` scales how much the settings differ
    (0: every difference is noise, a tie); ``failing``: some fits blow up (``_fail``)."""
    rng = np.random.default_rng(seed)
    params = read_params(PARAMS)
    train, sweep = load_train(params), load_sweep(params)
    folds = range(5)
    fold_rows = {"train": [280] * 5, "val": [70] * 5, "test": [90] * 5}
    schemas = {
        task: {"task": task, "source": f"data/user_{task}.csv", "sha256": sha256, "target": "y",
               "features": ["a", "b", "c"], "rows": 440, "folds": 5, "repeats": 1, "fold_rows": fold_rows,
               "with_accuracy": True, "scale_target": task == "regression",
               "target_stats": {"mean": 150.0, "std": 77.0, "min": 10.0, "max": 400.0}}
        for task in TASKS
    }  # fmt: skip
    ratios = {task: overlap_ratio(fold_rows) for task in TASKS}
    scores, held_out, all_rows = {}, [], {}
    for task in TASKS:
        rows = [_fit_row(task, {}, fold, rng, 0.0) for fold in folds]
        scores[task] = cv_scores(rows, task, ratios[task])
        for model in ("linear", "sklearn", "constant"):
            shift = {"linear": 0.0, "sklearn": 0.0, "constant": 1.0}[model]
            held_out += [
                {"task": task, "model": model, "repeat": 0, "fold": fold}
                | {k: v for k, v in _metrics(task, rng, 3000.0, shift).items() if k.startswith("test_")}
                for fold in folds
            ]
        values = {m: v for m, v in _metrics(task, rng, 2500.0, 0.0).items() if m.startswith("train_")}
        every = {m.removeprefix("train_"): v for m, v in values.items()}
        all_rows[task] = {"ours": every, "linear": every}
    baselines = {"held_out": held_out, "all_rows": all_rows}
    frame = pd.DataFrame(held_out)
    comparison = {"interval": "95% t interval over folds with Nadeau and Bengio's variance correction",
                  "n_test_over_n_train": ratios}  # fmt: skip
    for task in TASKS:
        network = pd.DataFrame(scores[task]["folds"])
        comparison[task] = against_baselines(network, frame, task, ratios[task]) | {"sweeps": {}}
    summaries = {}
    for name, spec in sweep.specs.items():
        rows = []
        grid = spec.grid
        rates = sorted(grid.get("lr", [0.0]))
        top = {"lr": rates[-1], "lr_below": rates[-2] if len(rates) > 1 else None,
               "hidden": max(grid.get("hidden", [0]))}  # fmt: skip
        tasks = [task for task in spec.tasks if task in TASKS]  # the control task is test_control.py's
        for task in tasks:
            for index, (point, _) in enumerate(sweep.configs(name, sweep.inherited(name, train, task), task)):
                point = {key: cell(value) for key, value in point.items()}
                size = effect * (index % 7) / 7
                fits = [_fit_row(task, point, fold, rng, size, spec.reach) for fold in folds]
                if failing and task == "regression":
                    fits = [_fail(row, fold, name, point, top) for fold, row in enumerate(fits)]
                rows += fits
        results = pd.DataFrame(rows)
        summary = summarise(results, spec.keys, SUMMARY_METRICS, ratios)
        summary["lr_limit"], summary["lr_limit_closed_form"] = 0.2, 0.21
        summary["lr_limit_unscaled"] = 0.02
        summaries[name] = summary
        for task in tasks:
            answer = settings_compared(results, task, spec.keys, ratios[task])
            answer["best_vs_linear"] = best_vs_baseline(results, answer, frame, task, "linear", ratios[task])
            network = pd.DataFrame(scores[task]["folds"])
            answer["headline_vs_best"] = headline_vs_tuned(network, results, task, answer, ratios[task])
            answer["each_minus_headline"] = each_minus_headline(network, results, task, spec.keys, ratios[task])
            answer["epochs_at_chosen_lr"] = epochs_at_chosen_lr(results, task, spec.keys, answer["best"], ratios[task])
            answer["failures"] = failures(results, task, spec.keys)
            if spec.fixed.get("patience") == 0 and "hidden" in spec.keys:
                answer["capacity"] = capacity(results, task, "hidden", ratios[task])
            for curve in spec.reach if spec.kind == "loss_curves" else []:
                answer["loss_mechanism"] = loss_mechanism(results, curve, ratios[task])
            comparison[task]["sweeps"][name] = answer
    epochs = np.arange(300)
    histories = {}
    for task in TASKS:
        loss = DEFAULT_LOSS[task]
        curve = 1 + np.exp(-epochs / 50)
        histories[task] = pd.DataFrame(
            {f"train_{loss}": curve, f"val_{loss}": curve + 0.1 + 1e-3 * (epochs - 150) ** 2 / 150**2,
             f"test_{loss}": curve + 0.2, "train_accuracy": 0.9, "val_accuracy": 0.9, "test_accuracy": 0.9}
        )  # fmt: skip
    provenance = {
        "digest": "d", "digest_tag": "t", "tracking_uri": "sqlite:///x", "experiment": "e",
        "train_runs": {task: "f" for task in TASKS}, "sweep_runs": {name: ("f", 1) for name in sweep.specs},
        "baselines_run": "f", "baseline_children": 1, "schemas": schemas, "versions": {"python": "3"},
        "params_yaml": "train: {}",
    }  # fmt: skip
    return ReportInputs(
        scores=scores, baselines=baselines, comparison=comparison, schemas=schemas, histories=histories,
        train_config={task: train.for_task(task).as_params() for task in TASKS}, summaries=summaries,
        sweep_specs=sweep.specs, ratios=ratios, provenance=provenance,
        overrides={task: sorted(train.overrides.get(task, {})) for task in TASKS},
    )  # fmt: skip


def _answers(markdown: str) -> list[list[str]]:
    return table_rows(markdown, "## Answers")


def test_the_answers_table_opens_the_report_with_a_row_per_question():
    document = build(crafted_inputs(sha256="0" * 64, effect=0.5))
    assert document["sections"][0]["title"] == "Answers"
    markdown = render_markdown(document, "figures")
    assert markdown.index("## Answers") < markdown.index("## 1. Derivation") < markdown.index("## 2.1")
    rows = _answers(markdown)
    for question in QUESTIONS:
        assert any(row[0].startswith(f"[{question}") for row in rows), question
    for row in rows[1:]:  # every measured answer: a number with its interval, and a link to its section
        assert INTERVAL.search(row[2]), row
        assert re.match(r"\[.+\]\(#\w+\)", row[0]), row[0]
    for heading in re.findall(r"^## (2\.\d|3\.)", markdown, re.M):  # each question's section ends with its answer
        body = markdown.split(f"## {heading}")[1].split("\n<a id=")[0]
        assert body.strip().split("\n\n")[-1].startswith("**Answer"), heading
    page = render_html(document, {})
    assert page.index('id="answers"') < page.index("<nav>") < page.index('id="derivation"')
    assert "<details>" in page  # the per-setting tables, collapsed in the appendix


def test_a_crafted_tie_states_its_range_once_with_its_detectable_size_and_ranks_nothing():
    markdown = render_markdown(build(crafted_inputs(sha256="0" * 64, effect=0.0)), "figures")
    rows = _answers(markdown)
    assert all(len(row) == 3 for row in rows), "question, answer, number: no column repeats the interval"
    ties = [row for row in rows if re.search(r"\btie -?\d", row[2])]
    assert len(ties) >= 6
    tie = re.compile(r"\btie (-?[\d.e+-]+ \(-?[\d.e+-]+ to -?[\d.e+-]+\)); detectable [\d.e+-]+")
    for row in ties:
        found = tie.findall(row[2])
        assert found, row
        for interval_text in found:  # the interval is said once, in the number cell
            assert " ".join(row).count(interval_text) == 1, (interval_text, row)
        assert "lies between" not in " ".join(row)
        assert "no difference" in row[1].lower()
        assert not re.search(r"\b(better|worse|lower|higher) than\b|detectably", row[1]), row[1]


def test_the_answers_table_is_short_enough_for_one_screen():
    """Each answer a few words; the long detail (sweep-picked settings, the fixed-budget protocol,
    6-digit plateaus, capped counts) stays in the sections, which keep their own answers."""
    document = build(crafted_inputs(sha256=REFERENCE_DATA_SHA256, effect=0.5, failing=True))
    markdown = render_markdown(document, "figures")
    rows = _answers(markdown)
    for row in rows:
        assert len(row[1].split()) <= 50, (len(row[1].split()), row[1])
        assert len(row[2].split()) <= 60, (len(row[2].split()), row[2])
    table_text = markdown.split("## Answers", 1)[1].split("\n## ", 1)[0]
    for detail in ("equal to 6 digits", "settings the sweeps picked", "no early stopping (unlike the headline)",
                   "still falling at the budget's last epoch", "fold(s) where both learned"):  # fmt: skip
        assert detail not in table_text, detail
    assert "no early stopping (unlike the headline)" in _section(markdown, "2.4")


def test_interval_numbers_in_the_table_have_three_significant_digits():
    from backprop.lab.answers.wording import short_interval, table_number

    spread = {"mean": 0.08815, "ci_low": -0.007122, "ci_high": 0.1692, "mde": 0.0227, "n": 5}
    assert short_interval(spread) == "0.0882 (-0.00712 to 0.169)"
    assert short_interval({"mean": 2939.2, "ci_low": 2543.9, "ci_high": 3334.6}) == "2939 (2544 to 3335)"
    assert table_number(spread, "a − b") == "a − b: tie 0.0882 (-0.00712 to 0.169); detectable 0.0227"
    detected = {"mean": -544.0, "ci_low": -669.2, "ci_high": -419.0, "mde": 167.0, "n": 5}
    assert table_number(detected, "train MSE") == "train MSE: -544 (-669 to -419)"
    assert "too few paired folds" in table_number({"mean": 1.0, "ci_low": None, "n": 1})
    assert short_interval({"mean": 0.97, "ci_low": 0.94, "ci_high": 1.007}, metric_bounds("accuracy", "x")) == (
        "0.97 (0.94 to 1)"
    )


def test_the_report_on_a_users_table_has_no_text_about_the_diabetes_data():
    theirs = render_markdown(build(crafted_inputs(sha256="1" * 64)), "figures")
    for text in DIABETES_TEXT:
        assert text not in theirs, text
    inputs = crafted_inputs(sha256=REFERENCE_DATA_SHA256)
    ours = render_markdown(build(inputs), "figures")
    assert "reference hand-in" in ours and fmt(REFERENCE_HAND_IN["mse"]) in ours
    # the 2.1 row gives this run's all-rows MSE, the number comparable with the hand-in's
    every = inputs.baselines["all_rows"]["regression"]
    for markdown, reference in ((ours, True), (theirs, False)):
        row = next(r for r in _answers(markdown) if r[0].startswith("[2.1") and "regression" in r[0])[1]
        assert f"all 440 rows: network {whole(every['ours']['mse'])}, ordinary least squares " in row, row
        assert f"{whole(every['linear']['mse'])}" in row
        assert ("reference hand-in 2858" in row) == reference, row


def test_the_derivation_is_a_template_whose_displays_become_equations():
    blocks = build(crafted_inputs(sha256="1" * 64))["sections"][1]["blocks"]
    kinds = [block["kind"] for block in blocks]
    assert kinds.count("eq") >= 10 and kinds[0] == "p"
    assert all("$$" not in block.get("text", "") for block in blocks)


# ---- what the report may claim (the skeptical review's findings) --------------------------------


def _section(markdown: str, heading: str) -> str:
    return markdown.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def test_the_answers_first_screen_states_data_protocol_settings_and_the_sign_rule():
    inputs = crafted_inputs(sha256="1" * 64, effect=0.0)
    markdown = render_markdown(build(inputs), "figures")
    opening = _section(markdown, "Answers").split("\n|", 1)[0]  # the lines above the table
    for schema in inputs.schemas.values():
        assert f"`{schema['source']}` ({schema['rows']} rows)" in opening
    assert "5-fold cross-validation" in opening and "a − b < 0" in opening and "no winner" in opening
    # every word the table uses is defined above it, on the first screen
    for word in ("**held out**", "**validation** part", "(**train**)", "**Headline networks** (params.yaml's",
                 "Nadeau–Bengio", "**detectable**", "80% power", "**Stable limit**: 2/λ_max", "at initialisation",
                 "**catapult**", "1 − mean |y − ŷ| / |y|", "squared target units", "log loss in nats"):  # fmt: skip
        assert word in opening, word
    margin = fmt(100 * inputs.train_config["regression"]["learned_margin"], 3)
    assert f"**learned** if its returned model's validation loss is ≥ {margin}% below the constant model's" in opening
    regression, classification = inputs.train_config["regression"], inputs.train_config["classification"]
    assert f"hidden {regression['hidden'][0]}" in opening and f"≤ {regression['epochs']} epochs" in opening
    assert f"classification lr {fmt(classification['lr'])}" in opening  # the override, by its value
    assert "train.overrides" not in opening  # the values, not the config keys
    rows = _answers(markdown)
    assert all("chosen" not in row[1] for row in rows), [row[1] for row in rows]
    regression_row = next(row for row in rows if row[0].startswith("[2.1") and "regression" in row[0])
    assert "accuracy (1 − MAPE)" in regression_row[1]
    assert "](#q22)" in next(row for row in rows if row[0].startswith("[2.2"))[1]  # links to the curves
    # one direction: every difference in the table names its a − b
    for row in rows[1:]:
        assert " − " in row[2], row[2]


def test_every_tie_in_the_sweep_sections_carries_its_detectable_size():
    """An interval that contains 0 is a tie: the rest of its sentence says what the design detects."""
    markdown = render_markdown(build(crafted_inputs(sha256="1" * 64, effect=0.0)), "figures")
    ties = 0
    for heading in ("2.3", "2.4", "2.5"):
        for text in _section(markdown, heading).split("\n\n"):
            if text.startswith(("|", "*", "![")):
                continue  # tables (per-setting means) and captions
            for match in re.finditer(r"(-?\d[\d.]*) to (-?\d[\d.]*)", text):
                if float(match[1]) <= 0 <= float(match[2]):
                    ties += 1
                    assert "detectable" in text[match.end() :].split(". ")[0], (heading, text[match.start() :][:160])
    assert ties >= 6


def test_blow_ups_show_how_far_the_loss_rose_and_units_count_only_moved_fits():
    markdown = render_markdown(build(crafted_inputs(sha256="1" * 64, failing=True)), "figures")
    width = _section(markdown, "2.4 The effect")
    assert "2 no_better_than_constant, 2 stalled, 1 diverged" in width
    assert "rose 9×10⁴ to 7.8×10⁵× its start (blow-ups" in width
    # measured on the 2 fits that moved (100% saturated), not averaged with the 2 stalled at their start
    assert "in the 2 fits that did not learn whose weights moved: 100.0% of units saturated" in width
    assert "λ_max 2.003 at the returned weights" in width and "constant model" in width
    appendix = _section(markdown, "Appendix")
    assert (
        "(training loss of the fits that neither learned nor diverged rose 9×10⁴ to 7.8×10⁵× its start: blew up)"
        in appendix
    )


def test_the_learning_rate_answer_does_not_claim_a_boundary_the_grid_cannot_locate():
    markdown = render_markdown(build(crafted_inputs(sha256="1" * 64, failing=True)), "figures")
    row = next(row for row in _answers(markdown) if row[0].startswith("[2.3"))[1]
    assert "lr 0.3 (1.5× the stable limit 0.2) learned after a catapult (loss first rose up to 44×)" in row
    assert "at lr 1 (5×), over 5 folds: 5 diverged." in row
    assert "Rates tried: 0.003, 0.01, 0.03, 0.1, 0.3, 1." in row  # params.yaml's lr grid
    assert "up to 1.5×" not in row and "Trains up to" not in row
    assert "the boundary lies between the two, and this grid does not locate it" in _section(markdown, "2.3")


def test_no_raw_target_stable_step_is_claimed():
    markdown = render_markdown(build(crafted_inputs(sha256="1" * 64)), "figures")
    rate = _section(markdown, "2.3")
    assert "stable step" not in rate.split("**The raw target")[1].split("\n\n")[0]
    assert "curvature at the first step only" in rate and "× larger" not in rate


def test_the_closed_form_limit_is_stated_for_sigmoid_only():
    inputs = crafted_inputs(sha256="1" * 64)
    assert "(closed form 0.21)" in _section(render_markdown(build(inputs), "figures"), "2.3")
    inputs.train_config["regression"] = inputs.train_config["regression"] | {"activation": "tanh"}
    assert "closed form 0.21" not in _section(render_markdown(build(inputs), "figures"), "2.3")


def test_width_and_activation_answers_rest_on_pairs_at_one_rate():
    inputs = crafted_inputs(sha256="1" * 64, effect=0.0, seed=1)  # a draw where a wider width fits best
    # the capacity sweep's rates are multiples of each width's own limit (lr_unit: limit)
    lrs = [
        f"{end['from']['lr']:g}× each width's own limit"
        for end in inputs.comparison["regression"]["sweeps"]["capacity"]["capacity"]["same_lr"]
    ]
    assert len(lrs) == 2
    markdown = render_markdown(build(inputs), "figures")
    rows = _answers(markdown)
    width = _section(markdown, "2.4").split("**Answer:**")[1]
    assert re.search(rf"hidden \d+ − 1 MSE at one multiple of each width's limit: {lrs[0]}", width), width
    assert f"; {lrs[1]}" in width, width
    assert re.search(r"test -?\d[\d.]* \(-?[\d.]+ to -?[\d.]+\), detectable \d", width), width
    assert "shape of overfitting" not in width
    row = next(row for row in rows if row[0].startswith("[2.4"))
    assert re.search(rf"Fixed \d+ epochs, no early stopping, at {lrs[0].replace('own ', '')}: ", row[1]), row[1]
    assert re.search(r"Fixed budget, hidden \d+ − 1: train MSE: .*; test MSE: ", row[2]), row[2]
    for task in TASKS:
        activation = _section(markdown, "2.5").split(f"**Answer ({task}):**")[1]
        assert "Mean best epoch" not in activation
        assert re.search(r"Best epoch, other − \w+, all at lr [\d.]+: \w+ -?[\d.]+ \(", activation), activation


def test_curve_minima_within_rounding_and_censored_at_the_last_epoch():
    epochs = np.arange(20, dtype=float)
    plateau = [2.43733, 2.4373301, 2.43733, 2.4373302, 2.43733, 2.43733]  # 6 digits, as history.csv keeps
    val = pd.Series(np.r_[np.linspace(5, 2.44, 7), plateau, np.linspace(2.45, 3, 7)])
    assert lowest_epochs(val) == (7, 12)  # equal to 6 digits: one minimum, whatever the argmin
    history = pd.DataFrame({"train_mse": 3 - epochs / 20, "val_mse": val, "test_mse": 3 - epochs / 40})
    facts = curve_facts(history, "mse", 9)
    text = where_lowest(facts, "mse")
    assert "epochs 7–12 (equal to 6 digits), kept 9" in text
    # censored at the last epoch, with the size the kept epoch misses: 2.775 against 2.525 at epoch 19
    assert "held-out MSE still falling when training stopped (epoch 19), to 2.52 there: the kept epoch's 2.77 " in text
    assert "is 0.25 (9.9%) above it" in text
    history["test_mse"] = (epochs - 4) ** 2 + 10.0
    text = where_lowest(curve_facts(history, "mse", 9), "mse")
    # the percentage is against the minimum it is measured from, and nothing plays the gap down
    assert "held-out MSE lowest at epoch 4: the kept epoch's 35 is 25 (250.0%) above that minimum 10" in text
    assert "only" not in text


def test_the_22_gap_is_across_folds_with_its_interval():
    rows = _answers(render_markdown(build(crafted_inputs(sha256="1" * 64)), "figures"))
    for row in (row for row in rows if row[0].startswith("[2.2")):
        assert re.search(r"validation − train [\w ]+: (tie )?-?[\d.e-]+ \(-?[\d.e-]+ to -?[\d.e-]+\)", row[2]), row[2]
        assert "% of train" not in row[1]


def test_intervals_are_clipped_to_the_metrics_range():
    assert interval({"mean": 0.97, "ci_low": 0.94, "ci_high": 1.007}, bounds=metric_bounds("test_accuracy", "x")) == (
        "0.97 (0.94 to 1)"
    )
    assert interval({"mean": 0.02, "ci_low": -0.01, "ci_high": 0.05}, bounds=metric_bounds("val_log_loss", "c")) == (
        "0.02 (0 to 0.05)"
    )
    assert metric_bounds("accuracy", "regression") == (None, 1.0)  # 1 − MAPE can be negative
    assert metric_bounds("accuracy", "classification") == (0.0, 1.0)


def test_generated_sentences_are_grammatical_and_take_the_init_from_params():
    inputs = crafted_inputs(sha256="1" * 64)
    markdown = render_markdown(build(inputs), "figures")
    assert "the headline network did not" not in markdown
    assert not re.search(r"no difference detected than", markdown)
    assert "would separate" not in markdown
    inputs.train_config["classification"] = inputs.train_config["classification"] | {"init": "he"}
    assert "(he initial weights, ŷ near ½)" in render_markdown(build(inputs), "figures")


def _catapult_summary(rates: tuple[float, float]) -> pd.DataFrame:
    """Two rates where every fold learned, the second past the limit 0.195 after a catapult (peak
    62.9×), ending at λ_max 3.05: lr·λ_max/2 = 0.4575 at the absolute rate 0.3."""
    return pd.DataFrame(
        {
            "task": "regression",
            "hidden": 16,
            "lr": list(rates),
            "lr_limit": 0.195,
            "lr_limit_closed_form": 0.2,
            "learned": 5,
            "fits": 5,
            "stability_ratio_end_mean": [0.5, 0.3 * 3.05 / 2],
            "peak_train_loss_ratio_max": [1.0, 62.9],
            "saturated_units_mean": 0.0,
        }
    )


def test_the_catapult_bound_on_the_hidden_activation():
    """λ_max ≥ 2(1 + ‖ā‖²): λ_max 3.05 at 16 units bounds the RMS mean activation by √(0.525/16);
    the closed-form limit 0.2 means ‖ā‖² = 4 at the start (0.5 per unit). No catapult, no claim.
    Rates in units of the limit give the same λ_max from the same fits (the step is lr × limit)."""
    from backprop.lab.answers.stability import activation_bound, catapult_facts, width_bounds

    facts = catapult_facts(_catapult_summary((0.1, 0.3)), "regression")
    after, before = activation_rms(facts, 16)
    assert after == pytest.approx((0.525 / 16) ** 0.5) and before == pytest.approx(0.5)
    assert activation_rms(facts | {"peak": 1.0}, 16) is None
    assert activation_rms(facts | {"past_limit": False}, 16) is None  # below the limit
    assert activation_rms(facts | {"sharpness_end": 12.0}, 16) is None  # not below the start
    units = _catapult_summary((0.1 / 0.195, 0.3 / 0.195))
    in_units = catapult_facts(units, "regression", in_units=True)
    assert activation_rms(in_units, 16) == pytest.approx((after, before))
    # read as absolute rates, the multiples would put λ_max below 2: no bound at all
    assert activation_rms(catapult_facts(units, "regression"), 16) is None
    text = width_bounds(units, {"activation": "sigmoid"}, in_units=True)
    assert "hidden 16 at 1.538× its limit: at most 0.18, against 0.5 at initialisation" in text
    assert "0% saturated there by that strict rule" in text
    # the units' part is never measured through the spike: consistent with, not caused by
    assert "Consistent with the catapults lowering the curvature" in text
    assert "λ_max measured at initialisation, where the loss came back to its start after the spike" in text
    said = activation_bound(facts, {"hidden": [16], "activation": "sigmoid"})
    assert "consistent with the catapult lowering the curvature" in said and "lowered the" not in said
    # with λ_max measured where the loss came back after the spike, the lowering itself is measured
    summary = _catapult_summary((0.1, 0.3)).assign(
        sharpness_after_peak_mean=[float("nan"), 2.5], sharpness_after_peak_epoch_max=[float("nan"), 7.0]
    )
    measured = activation_bound(catapult_facts(summary, "regression"), {"hidden": [16], "activation": "sigmoid"})
    assert (
        "λ_max where the loss came back to its start after the spike (by epoch 7) was 2.5, against 10.3 at "
        "initialisation and 2/lr = 6.67: the catapult lowered the curvature within those epochs" in measured
    )


def _width_summary() -> pd.DataFrame:
    """A hidden sweep in units of the limit: hidden 16 learns up to 1.5×, hidden 64 up to 0.5×."""
    rows = []
    for hidden, limit, learned in ((16, 0.195, {0.5: 5, 1.5: 5}), (64, 0.0584, {0.5: 5, 1.5: 2})):
        for lr, count in learned.items():
            rows.append(
                {"task": "regression", "hidden": hidden, "lr": lr, "lr_limit": limit, "learned": count, "fits": 5}
                | {"peak_train_loss_ratio_max": 51.0 if lr > 1 else 1.0}
            )
    return pd.DataFrame(rows)


def test_rates_in_units_of_the_limit_are_their_own_multiple():
    """In a sweep with lr_unit: limit, lr 0.5 is 0.5× the width's limit, not 0.5 / limit; past the
    limit means above 1, and no grid scaled to each width's limit is suggested (it is one)."""
    from backprop.lab.answers.stability import above_limit_sentence, limit_sentence

    summary = _width_summary()
    text = limit_sentence(summary, "regression", ["hidden"], in_units=True)
    assert "largest lr that learned in every fold 1.5× the limit" in text
    assert "hidden 64: limit 0.0584, largest lr that learned in every fold 0.5× the limit" in text
    assert "smallest that did not 1.5× the limit" in text
    assert "7.7×" not in text and "8.6×" not in text
    answer = {"settings": [{"point": {"hidden": 16, "lr": 1.5}}, {"point": {"hidden": 64, "lr": 0.5}}]}
    past = above_limit_sentence(answer, summary, "regression", "width", in_units=True)
    assert "hidden 16, lr 1.5 (1.5× its own limit)" in past and "hidden 64" not in past
    assert "scaled to each" not in past
    # absolute rates: the old division still applies
    absolute = limit_sentence(summary, "regression", ["hidden"])
    assert "(7.7× the limit)" in absolute
    assert "scaled to each" in above_limit_sentence(answer, summary, "regression", "width")


def test_fixed_budget_in_units_is_one_multiple_and_an_unpaired_rate_is_not_compared():
    from backprop.lab.answers.q24 import same_lr_short

    paired = {"mean": -544.0, "ci_low": -669.0, "ci_high": -419.0, "mde": 167.0, "n": 5}
    tie = {"mean": 145.0, "ci_low": -512.0, "ci_high": 801.0, "mde": 879.0, "n": 5}
    empty = {"mean": None, "ci_low": None, "ci_high": None, "mde": None, "n": 0}
    ends = [
        {"from": {"hidden": 1, "lr": 0.5}, "to": {"hidden": 16, "lr": 0.5}}
        | {"train_mse_wider_minus_narrower": paired, "test_mse_wider_minus_narrower": tie},
        {"from": {"hidden": 1, "lr": 1.0}, "to": {"hidden": 16, "lr": 1.0}}
        | {"train_mse_wider_minus_narrower": empty, "test_mse_wider_minus_narrower": empty},
    ]
    capacity = pd.DataFrame(
        [
            {"task": "regression", "hidden": h, "lr": lr, "lr_limit": 0.2, "learned": 5, "fits": 5, "capped": 5}
            for h in (1, 16)
            for lr in (0.5, 1.0)
        ]
    )
    text = same_lr_short(ends, capacity, 2000, in_units=True, capacity=capacity)
    assert "at one multiple of each width's limit" in text and "at one rate" not in text
    assert "1× each width's own limit: not compared (a side did not learn in every fold" in text
    assert "n/a" not in text
    assert "no overfitting detected (at multiple 0.5)" in text
    assert "hidden 1, lr 0.5: 5 of 5, hidden 16, lr 0.5: 5 of 5" in text
    none = same_lr_short(ends[1:], capacity, 2000, in_units=True)
    assert "no rate compared, so no conclusion" in none and "no overfitting detected" not in none


def test_the_report_prints_the_patience_early_stopping_used():
    """The effective patience is max(patience, ⌈patience_share × epochs⌉), as TrainConfig says."""
    from backprop.lab.answers.settings import effective_patience, patience_text

    config = {"patience": 100, "patience_share": 0.25, "epochs": 2000}
    from backprop.lab.config import TrainConfig

    trained = TrainConfig(hidden=(4,), activation="sigmoid", lr=0.1, epochs=2000, patience=100, patience_share=0.25)
    assert effective_patience(config) == trained.stopping_patience == 500
    assert patience_text(config) == (
        "early stopping after 500 epochs without improvement (patience 100, at least 0.25 of the 2000-epoch budget)"
    )
    assert (
        patience_text(config | {"epochs": 200}) == "early stopping after 100 epochs without improvement (patience 100)"
    )
    assert patience_text(config | {"patience": 0}) == "no early stopping"
    inputs = crafted_inputs(sha256="1" * 64)
    for task in inputs.train_config:
        inputs.train_config[task] = inputs.train_config[task] | config
    markdown = render_markdown(build(inputs), "figures")
    assert "early stopping (patience 100)" not in markdown and "patience 100," in markdown
    assert "early stopping after 500 epochs without improvement (patience 100" in markdown


def test_rates_in_units_are_explained_once_per_section():
    inputs = crafted_inputs(sha256="1" * 64)
    in_units = [name for name, spec in inputs.sweep_specs.items() if spec.fixed.get("lr_unit") == "limit"]
    assert {"hidden", "capacity"} <= set(in_units)  # both answer 2.4
    markdown = render_markdown(build(inputs), "figures")
    assert markdown.count("**Rates in units of the limit.**") == 1
    assert "In the `hidden` and `capacity` sweeps every rate" in markdown


def test_oscillating_fits_are_called_unstable_not_failed():
    from backprop.lab.answers.stability import failed_fits_text

    entry = {"point": {"hidden": 4, "lr": 1.5}, "outcomes": {"learned": 1, "oscillating": 4}, "moved": 4}
    text = failed_fits_text(entry | {"saturated_units_moved_mean": 0.0}, "classification")
    assert "in the 4 unstable (oscillating) fits whose weights moved: 0% of units saturated" in text
    assert "did not learn" not in text


def test_section_3_ties_carry_their_detectable_size():
    from backprop.lab.answers.q3 import mechanism_conclusion

    def diff(mean, low, high, mde):
        return {"mean": mean, "ci_low": low, "ci_high": high, "mde": mde, "n": 5, "wins": 3}

    pair = {
        "kind": "2× lr",
        "log_loss_lr": 0.3,
        "mse_lr": 0.6,
        "reached": {"mse": 5, "log_loss": 5, "of": 5},
        "epochs_log_loss_minus_mse": diff(-5.0, -15.8, 5.79, 14.5),
        "test_log_loss_log_loss_minus_mse": diff(0.01, -0.03, 0.05, 0.0535),
        "test_accuracy_log_loss_minus_mse": diff(0.0, -0.01, 0.01, 0.0104),
    }
    text = mechanism_conclusion({"pairs": [pair]}, "val accuracy ≥ 0.95")
    assert "no difference detected in 1 (detectable 14.5 epochs)" in text
    assert "held-out log loss: no difference detected in 1 (detectable 0.0535)" in text
    assert "held-out accuracy: no difference detected in 1 (detectable 0.0104)" in text


def test_a_sweep_choice_in_units_of_the_limit_says_so():
    from backprop.lab.answers.q21 import sweep_choices_differ

    comparison = {"regression": {"sweeps": {"hidden": {"best": {"hidden": 4, "lr": 0.25}}}}}
    config = {"hidden": [16], "lr": 0.1}
    assert sweep_choices_differ("regression", config, comparison) == ["hidden sweep: hidden 4 at lr 0.25"]
    units = sweep_choices_differ("regression", config, comparison, frozenset({"hidden"}))
    assert units == ["hidden sweep: hidden 4 at lr 0.25× its own limit"]


def test_the_width_answer_rests_on_the_headline_network_with_the_power_over_widths():
    """Review 3: the 2.4 row compares the best width with the headline network itself (paired by
    fold with the train stage's fits), not with the noisiest sweep cell; its number gives the
    detectable sizes against every other width; the section's answer states both networks' rates,
    budgets and patience."""
    from backprop.lab.answers.wording import flipped, short_interval

    inputs = crafted_inputs(sha256="1" * 64)
    inputs.sweep_specs["hidden"].fixed["epochs"] = 4000  # the default params' hidden sweep
    answer = inputs.comparison["regression"]["sweeps"]["hidden"]
    markdown = render_markdown(build(inputs), "figures")
    (row,) = [row for row in _answers(markdown) if row[0].startswith("[2.4")]
    best = answer["best"]
    difference = flipped(answer["headline_vs_best"]["headline_minus_tuned"])
    label = f"hidden {best['hidden']} (best on validation) − hidden 16 (headline), test MSE: "
    assert f"{label}tie {short_interval(difference)}; detectable " in row[2], row[2]
    mdes = [v["mde"] for v in answer["best_minus_other"]]
    assert f"({whole(min(mdes))} to {whole(max(mdes))} against the other widths)" in row[2]
    sentence = _section(markdown, "2.4").split("**Answer:**")[1]
    rest = f"hidden {best['hidden']} at {fmt(best['lr'])}× its limit (best on validation)"
    assert f"{rest} − the headline network (hidden 16 at the absolute lr 0.1, 0.5× its limit)" in sentence
    assert interval(difference, 3) in sentence
    assert "(the hidden sweep: ≤ 4000 epochs, patience 1000; the headline ≤ 2000 epochs, patience 500)" in sentence


def test_every_activation_has_its_held_out_comparison_at_its_own_rate_in_the_table():
    """Review 4: ReLU's row gives its held-out comparison at its own best rate, not a best-epoch
    pairing at the best activation's rate where it did not learn."""
    from backprop.lab.answers.wording import short_interval

    inputs = crafted_inputs(sha256="1" * 64)
    rows = _answers(render_markdown(build(inputs), "figures"))
    for task in TASKS:
        answer = inputs.comparison[task]["sweeps"]["activation"]
        (row,) = [row for row in rows if row[0].startswith("[2.5") and task in row[0]]
        best = answer["best"]["activation"]
        assert len(answer["best_minus_other"]) == 3
        for versus in answer["best_minus_other"]:
            other = versus["other"]
            assert f"{best} − {other['activation']}: tie {short_interval(versus)}" in row[2], row[2]
            assert f"{other['activation']} at lr {fmt(other['lr'])}" in row[1], row[1]
        assert "no interval" not in row[1] and "each at its own best rate" in row[1]


def test_every_answer_row_is_on_the_first_screen_at_1280_by_800(tmp_path):
    """Review 4: a reader of report.html's first screen (1280×800) sees every row of the answers
    table, and the definitions above it; measured in headless Chromium on the longest texts."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium where apt-get works)")
    document = build(crafted_inputs(sha256=REFERENCE_DATA_SHA256, effect=0.5, failing=True))
    probe = """<script>
    window.addEventListener("load", () => {
      const rows = [...document.querySelectorAll("#answers tbody tr")];
      const bottom = Math.max(...rows.map(r => r.getBoundingClientRect().bottom));
      document.body.setAttribute("data-probe", `rows=${rows.length} bottom=${Math.ceil(bottom)} ` +
        `width=${window.innerWidth} height=${window.innerHeight}`);
    });
    </script></body>"""
    (tmp_path / "page.html").write_text(render_html(document, {}).replace("</body>", probe))
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,800",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", "--dump-dom",
         f"file://{tmp_path / 'page.html'}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    found = re.search(r'data-probe="rows=(\d+) bottom=(\d+) width=(\d+) height=(\d+)"', result.stdout)
    assert found, result.stderr[-1000:]
    rows, bottom, width, _ = map(int, found.groups())
    assert width == 1280  # the layout's width; --dump-dom's window is shorter than a screenshot's 800 px
    assert rows == len(_answers(render_markdown(document, "figures"))) >= 10
    assert bottom <= 800, f"the last answer row ends at {bottom} px, below the first screen"


def test_a_best_setting_past_its_limit_with_the_widest_spread_says_so():
    """Review 4 (skeptic): the 2.3 and 2.5 numbers pair with a setting past its stable limit,
    whose folds spread most: the detectable sizes are the spread's, and the row says why."""
    from backprop.lab.answers.choices import spread_note

    summary = pd.DataFrame(
        {"task": "regression", "activation": ["sigmoid", "tanh", "relu"], "lr": [0.3, 0.1, 0.03],
         "lr_limit": [0.195, 0.2, 0.3], "test_mse_std": [577.0, 199.0, 427.0]}
    )  # fmt: skip
    best, others = (
        {"activation": "sigmoid", "lr": 0.3},
        [{"activation": "tanh", "lr": 0.1}, {"activation": "relu", "lr": 0.03}],
    )
    note = spread_note(summary, "regression", best, others, "MSE")
    assert note == (
        "; sigmoid at lr 0.3 is 1.5× its stable limit and its folds spread most (test MSE sd over folds 577, "
        "against 199 to 427)"
    )
    assert spread_note(summary.assign(lr_limit=0.5), "regression", best, others, "MSE") == ""  # below its limit
    wider = summary.assign(test_mse_std=[577.0, 199.0, 600.0])
    assert spread_note(wider, "regression", best, others, "MSE") == ""  # not the widest spread


def test_activation_speed_is_described_where_every_activation_learned():
    """Review 4 (skeptic): at the best activation's rate the others may not learn, so no pair;
    the section then gives every activation's mean best epoch at the largest rate where all
    learned in every fold, flagging the budget-capped folds."""
    from backprop.lab.answers.q25 import common_rate_epochs

    summary = pd.DataFrame(
        [{"task": "regression", "activation": a, "lr": lr, "fits": 5, "learned": 5 if lr < 0.3 or a == "sigmoid" else 0,
          "best_epoch_mean": {"sigmoid": 1678.0, "relu": 355.0}[a] * (0.1 / lr) ** 0 / (1 if lr < 0.1 else 3),
          "capped": 3 if a == "sigmoid" and lr < 0.1 else 0}
         for a in ("sigmoid", "relu") for lr in (0.03, 0.1, 0.3)]
    )  # fmt: skip
    answer = {"best": {"activation": "sigmoid", "lr": 0.3}, "best_minus_other": [{"other": {"activation": "relu"}}]}
    text = common_rate_epochs(summary, answer, "regression")
    assert "At lr 0.1, the largest rate where every activation learned in every fold" in text
    assert "sigmoid 559, relu 118." in text
    summary.loc[summary["lr"] == 0.1, "learned"] = 4
    assert "sigmoid 1678 (3 of 5 folds still improving at the budget), relu 355." in common_rate_epochs(
        summary, answer, "regression"
    )
    assert common_rate_epochs(summary, answer | {"best": {"activation": "sigmoid", "lr": 0.03}}, "regression") == ""


def test_each_sweep_point_against_the_headline_is_paired_by_fold_and_skips_failed_points():
    network = pd.DataFrame(
        {"repeat": 0, "fold": range(5), "outcome": "learned", "test_mse": [10.0, 11.0, 12.0, 13.0, 14.0]}
    )
    rows = pd.DataFrame(
        [
            {"task": "regression", "lr": lr, "repeat": 0, "fold": f, "outcome": outcome, "test_mse": 10.0 + f + shift}
            for lr, shift, outcome in ((0.1, 0.0, "learned"), (0.03, 2.0, "learned"), (1.0, 0.0, "diverged"))
            for f in range(5)
        ]
    )
    versus = {v["point"]["lr"]: v for v in each_minus_headline(network, rows, "regression", ["lr"], 0.25)}
    assert set(versus) == {0.1, 0.03}  # lr 1.0 did not learn in every fold: no comparison
    assert versus[0.1]["mean"] == 0.0 and versus[0.1]["mde"] == 0.0
    assert versus[0.03]["mean"] == pytest.approx(2.0) and versus[0.03]["n"] == 5


def test_the_rate_and_activation_rows_rest_on_stable_rates_against_the_headline():
    """Review 4 (c)1: past the limit the folds' spread blows up, so a row resting on that cell
    reports a detectable size the run does not have. 2.3's tie cell adds the rates below the limit
    against the headline; 2.5's row rests on the runner-up activation at the headline's own rate
    minus the headline network, when the best on validation has the headline's activation."""
    inputs = crafted_inputs(sha256="1" * 64, effect=0.3)
    lr = inputs.comparison["regression"]["sweeps"]["lr"]
    below = [v for v in lr["each_minus_headline"] if v["point"]["lr"] < 0.2 and v["point"]["lr"] != 0.1]
    activation = inputs.comparison["regression"]["sweeps"]["activation"]
    activation["best"] = {"activation": "sigmoid", "lr": 0.3}
    rows = _answers(render_markdown(build(inputs), "figures"))
    rate = next(row for row in rows if row[0].startswith("[2.3"))
    low, high = min(v["ci_low"] for v in below), max(v["ci_high"] for v in below)
    mdes = sorted(v["mde"] for v in below)
    assert (
        f"below the limit (lr 0.003 to 0.03) − the headline: ties, all within {fmt(low, 3)} to "
        f"{fmt(high, 3)}; detectable {fmt(mdes[0], 3)} to {fmt(mdes[-1], 3)}" in rate[2]
    ), rate[2]
    ranked = sorted(
        (s for s in activation["settings"] if s["point"]["activation"] != "sigmoid" and s["every_fold_learned"]),
        key=lambda s: s["val_mean"],
    )
    runner = ranked[0]["point"]["activation"]
    shared = next(v for v in activation["each_minus_headline"] if v["point"] == {"activation": runner, "lr": 0.1})
    (act,) = [row for row in rows if row[0].startswith("[2.5") and "regression" in row[0]]
    assert act[2].startswith(f"{runner} at lr 0.1 − the headline sigmoid, test MSE: "), act[2]
    assert f"({whole(shared['ci_low'])} to {whole(shared['ci_high'])})" in act[2] or "tie" in act[2]
    assert "; each at its own best rate, " in act[2]  # the row keeps every activation at its own rate
    assert "sigmoid at lr 0.3 (best on validation)" in act[1]


def test_the_width_row_puts_the_controls_contrast_beside_its_own_and_counts_capped_fits():
    """Review 4 (c)6, (c)9, (c)10: the narrowest width − the headline network on the data set (the
    control column's contrast); the fits still improving beside every generalisation comparison;
    the capacity rule as it is applied."""
    inputs = crafted_inputs(sha256="1" * 64)
    answer = inputs.comparison["regression"]["sweeps"]["hidden"]
    points = [v["other"] for v in answer["best_minus_other"]] + [answer["best"]]
    narrowest = min(points, key=lambda point: point["hidden"])
    versus = next(v for v in answer["each_minus_headline"] if v["point"] == narrowest)
    markdown = render_markdown(build(inputs), "figures")
    (row,) = [row for row in _answers(markdown) if row[0].startswith("[2.4")]
    words = f"hidden {narrowest['hidden']} − headline: tie {short_interval(versus)}, detectable {whole(versus['mde'])}"
    if narrowest == answer["best"]:  # the row's own pair is that contrast: said once
        assert row[2].startswith(f"hidden {narrowest['hidden']} (best on validation) − hidden 16 (headline)")
        assert words.split(": ", 1)[1].replace(", detectable", "; detectable") in row[2]
        assert row[2].count(short_interval(versus)) == 1
    else:
        assert words in row[2], row[2]
    width = _section(markdown, "2.4")
    assert "Fits still improving when the budget ran out" in width
    assert "the headline network: 0 of 5" in width
    assert "lowest mean training error among the rates where every fold learned" in width
    assert "where its training error is lowest" not in width


def test_the_protocol_defines_every_outcome_with_the_margin_from_params():
    """Review 4 (c)7: "learned" decides which settings can be chosen, so the report defines it."""
    inputs = crafted_inputs(sha256="1" * 64)
    for config in inputs.train_config.values():
        config["learned_margin"] = 0.125
    protocol = _section(render_markdown(build(inputs), "figures"), "2.1").split("**Protocol.**")[1].split("\n\n")[0]
    for outcome in ("`diverged`", "`oscillating`", "`stalled`", "`no_better_than_constant`", "`learned`"):
        assert outcome in protocol
    assert "by 12.5% (`train.learned_margin`)" in protocol


def test_activation_speed_is_paired_at_the_largest_rate_where_every_fit_learned_and_reached():
    """Review 4 (c)2: at the best's own rate the other activations may not learn, so speed is
    compared at the largest rate where every activation learned and reached the level in every
    fold; the row says which is faster only when the interval excludes 0."""
    from backprop.lab.answers.q25 import speed_words
    from backprop.lab.comparisons import reach_at_common_rate

    rows = pd.DataFrame(
        [{"task": "regression", "activation": a, "lr": lr, "repeat": 0, "fold": f,
          "outcome": "learned" if lr < 0.3 or a == "sigmoid" else "oscillating",
          "reach_train_loss_of_constant": (50 if a == "sigmoid" else 10) + f * (1 + (a == "tanh"))}
         for a in ("sigmoid", "tanh") for lr in (0.03, 0.3) for f in range(5)]
    )  # fmt: skip
    found = reach_at_common_rate(rows, "regression", ["activation", "lr"], {"activation": "sigmoid", "lr": 0.3},
                                 "train_loss_of_constant", 0.6, 0.25)  # fmt: skip
    assert found["lr"] == 0.03 and found["best"] == {"activation": "sigmoid"}  # 0.3: tanh did not learn
    (versus,) = found["versus"]
    assert versus["other"] == {"activation": "tanh", "lr": 0.03} and versus["mean"] == pytest.approx(-38.0)
    short, number, sentence = speed_words({"reach_at_common_rate": found})
    assert "Speed (at lr 0.03, epochs to train loss ≤ 0.6× the constant model's): tanh faster than sigmoid." in short
    assert number.startswith("epochs to train loss ≤ 0.6× the constant model's at lr 0.03, − sigmoid: tanh: -38")
    assert "(the largest rate where every activation learned and reached it in every fold)" in sentence
    tied = rows.assign(reach_train_loss_of_constant=lambda r: 30 + r["fold"] * 7 * (r["activation"] == "tanh") - 14)
    found = reach_at_common_rate(tied, "regression", ["activation", "lr"], {"activation": "sigmoid", "lr": 0.3},
                                 "train_loss_of_constant", 0.6, 0.25)  # fmt: skip
    assert "no difference detected" in speed_words({"reach_at_common_rate": found})[0]
    assert reach_at_common_rate(rows.drop(columns="reach_train_loss_of_constant"), "regression",
                                ["activation", "lr"], {"activation": "sigmoid"}, "train_loss_of_constant", 0.6, 0.25) is None  # fmt: skip


def test_failed_fits_at_the_edge_of_stability_are_counted_and_said():
    """Review 5: oscillating fits whose lr·λ_max/2 ends near 1 sit at Cohen et al.'s edge; the
    failures name how many, and their units at the last weights."""
    from backprop.lab.answers.stability import failed_fits_text
    from backprop.lab.comparisons import failures

    rows = pd.DataFrame(
        [{"task": "regression", "lr": 0.1, "repeat": 0, "fold": f, "outcome": "oscillating" if f < 4 else "learned",
          "best_epoch": 10, "peak_train_loss_ratio": 1.0, "saturated_units": 0.0, "saturated_units_last": 0.25,
          "lr_applied": 0.1, "sharpness_last": [20.0, 20.5, 30.0, 19.0, 20.0][f], "sharpness_end": 15.0}
         for f in range(5)]
    )  # fmt: skip
    (entry,) = failures(rows, "regression", ["lr"])
    assert entry["at_edge"] == 3 and entry["edge_measured"] == 4  # 1.0, 1.025, 0.95 in; 1.5 out
    assert entry["saturated_units_last_mean"] == pytest.approx(0.25)
    text = failed_fits_text(entry, "regression")
    assert "at their last weights 25% saturated" in text
    assert "3 of 4 ended at the edge of stability (lr·λ_max/2 within 0.1 of 1 at their last weights)" in text


def test_the_rate_answer_says_how_long_each_rate_trained_and_why_no_rate_of_1_can_be_stable():
    from backprop.lab.answers.q23 import mechanism_words, rate_speed

    answer = {"epochs_minus_headline": [
        {"point": {"lr": 0.03}, "capped": 3, "n": 5, "mean": 988.0, "ci_low": 401.0, "ci_high": 1575.0, "mde": 800.0},
        {"point": {"lr": 0.1}, "capped": 0, "n": 5, "mean": 0.0, "ci_low": 0.0, "ci_high": 0.0, "mde": 0.0},
        {"point": {"lr": 0.3}, "capped": 0, "n": 5, "mean": -162.0, "ci_low": -1643.0, "ci_high": 1319.0, "mde": 1983.0},
    ]}  # fmt: skip
    short, cell, sentence = rate_speed(answer, {"lr": 0.1})
    assert short == " Lower rates train longer: best epoch at lr 0.03 later than at 0.1."
    assert cell == "best epoch, lr 0.03 − lr 0.1: 988 (401 to 1575) (3 of 5 capped)"
    assert "lr 0.3: -162 (-1643 to 1319)" in sentence and "lr 0.03 3 of 5" in sentence
    facts = {"limit": 0.195, "closed_form": 0.2, "largest": 0.3, "first_broken": 1.0}
    assert "no rate of 1 or more can converge" in mechanism_words(facts, {"loss": None})
    assert "no rate of 1 or more" not in mechanism_words(facts, {"loss": "log_loss"})
    assert "no rate of 1 or more" not in mechanism_words(facts | {"first_broken": 0.6}, {"loss": None})


def test_an_overridden_setting_says_what_trains_own_value_gives():
    from backprop.lab.answers.q21 import override_words

    comparison = {"classification": {"without_override": {
        "metric": "test_log_loss", "own": {"lr": 0.1}, "sweep": "activation", "point": {"activation": "sigmoid", "lr": 0.1},
        "scores": {"mean": 0.0772, "ci_low": 0.0209, "ci_high": 0.134, "n": 5}, "capped": 3, "learned": 5}}}  # fmt: skip
    assert override_words(comparison, "classification") == (
        "with `train`'s own lr 0.1 instead (sweep activation's sigmoid at lr 0.1), held-out log loss 0.0772 "
        "(0.0209 to 0.134) (still improving when the epoch budget ran out: 3 of 5 fits)"
    )
    found = comparison["classification"]["without_override"]
    found["minus_headline"] = {"mean": -0.0109, "ci_low": -0.0388, "ci_high": 0.017, "mde": 0.0374, "n": 5,
                               "headline_capped": 2}  # fmt: skip
    assert override_words(comparison, "classification") == (
        "with `train`'s own lr 0.1 instead (sweep activation's sigmoid at lr 0.1), held-out log loss 0.0772 "
        "(0.0209 to 0.134); it − the headline: tie -0.0109 (-0.0388 to 0.017); detectable 0.0374: held-out loss "
        "gives no reason for the override (still improving when the epoch budget ran out: 3 of 5 fits at lr 0.1, "
        "2 of the headline's)"
    )
    assert override_words(comparison, "regression") == ""
