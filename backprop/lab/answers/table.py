"""The answers table that opens the report: one row per question (each section's answer), the
lines above it that make the first screen read on its own, and the derivation's row. No I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backprop.lab.answers.settings import intro_patience
from backprop.lab.blocks import answer_row, fmt, paragraph, section, table


def update_rule_row() -> dict:
    """The derivation's answer: not measured, derived (and checked against finite differences)."""
    sentence = (
        "Only δ₂ differs: (2/n)(ŷ − y) for MSE on an identity output, (1/n)(ŷ − y) for log loss on a sigmoid "
        "output; everything from δ₂ back is the same."
    )
    return answer_row(
        "the update rule, MSE against log loss",
        "derivation",
        sentence,
        "derived; gradients match finite differences (< 1e-6)",
    )


ANSWER_MARK = "**Answer"  # how a section's own answer paragraph begins
ANSWER_HEADER = [
    "question",
    "answer (from this run)",
    "the number it rests on: a − b, mean (95% CI)",
    "tie: where a difference lies; detectable (80% power)",
]


def answers_intro(schemas: dict, configs: dict) -> dict:
    """The lines above the answers table: the data by name, the protocol, the headline networks'
    actual settings, and how to read a difference, so the first screen reads on its own."""
    data = ", ".join(f"{task} `{schema['source']}` ({schema['rows']} rows)" for task, schema in schemas.items())
    reg = schemas["regression"]
    repeats = f" repeated {reg['repeats']}×" if reg.get("repeats", 1) > 1 else ""
    words: dict[str, Callable[[Any], str]] = {
        "hidden": lambda c: f"hidden {c['hidden'][0] if len(c['hidden']) == 1 else c['hidden']}",
        "activation": lambda c: str(c["activation"]),
        "lr": lambda c: f"lr {fmt(c['lr'])}",
        "epochs": lambda c: f"≤ {c['epochs']} epochs",
    }
    first = next(iter(configs.values()))
    shared = [words[key](first) for key in words if all(words[key](c) == words[key](first) for c in configs.values())]
    differ = [
        f"{task} {words[key](config)}"
        for key in words
        if not all(words[key](c) == words[key](first) for c in configs.values())
        for task, config in configs.items()
    ]
    settings = ", ".join([*shared, intro_patience(configs)]) + (f" ({', '.join(differ)})" if differ else "")
    return paragraph(
        f"**Data**: {data}. **Protocol**: {reg['folds']}-fold cross-validation{repeats}; means over the held-out "
        "folds with 95% intervals, comparisons paired by fold; sweeps pick settings on validation rows. **Headline "
        f"networks** (from params.yaml): {settings}. **a − b < 0** means a is lower (a lower loss, or fewer epochs, "
        "is better). A **tie** (interval contains 0) has no winner."
    )


def answers_section(sections: list[dict], intro: dict | None = None) -> dict:
    """The report's opening: every section's answer rows in one table, each linking to its section.
    A row is a dict (``blocks.answer_row``): a second task answering the same question (a control
    table) adds a key to its rows and a column here."""
    rows = [
        [f"[{row['question']}](#{row['anchor']})", row["answer"], row["number"], row["tie"] or "—"]
        for s in sections
        for row in s["answers"]
    ]
    header = ANSWER_HEADER
    if any("control" in row for s in sections for row in s["answers"]):
        header = [*ANSWER_HEADER, "the control task: is the same effect detected? (difference, 95% CI)"]
        rows = [[*cells, row.get("control") or "—"] for cells, row in zip(rows, _rows(sections), strict=True)]
    note = paragraph(
        "Each answer is generated from this run's paired comparisons over the held-out folds: 95% t intervals "
        "with Nadeau and Bengio's correction for folds that share training rows, clipped to the metric's range. "
        '"Best on validation" is the setting with the lowest mean validation loss, not a winner on the test '
        "folds. The detectable size is (t₀.₉₇₅ + t₀.₈) times the same corrected standard error."
    )
    return section("Answers", [*([intro] if intro else []), table(header, rows), note], "answers")


def _rows(sections: list[dict]) -> list[dict]:
    return [row for s in sections for row in s["answers"]]
