"""The report's building blocks (paragraphs, equations, tables, figures, code, sections) and how
its numbers are written. No I/O."""

from __future__ import annotations

import math

import numpy as np

# docs/reference.md, "The reference answer to beat": not from this run.
REFERENCE_HAND_IN = {"mse": 2858.4015, "accuracy": 0.6107}
# The one table the reference hand-in was scored on (data/diabetes.csv): its numbers, and any text
# about that hand-in or that table, appear only for a table with this sha256 (schema.json's).
REFERENCE_DATA_SHA256 = "9193026b7622ff944f0a6855a10107b24caf50dad69787c46e6890e69c27faca"
# A metric in words: the report, the figures' titles and the console say it alike (an axis adds its
# units: figures.METRIC_LABEL).
LABELS = {"mse": "MSE", "log_loss": "log loss", "accuracy": "accuracy", "r2": "R²", "rmse": "RMSE"}


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


def section(title: str, blocks: list[dict], anchor: str, answers=(), appendix=()) -> dict:
    """A report section; ``answers`` are its rows of the answers table, ``appendix`` the blocks
    (per-setting tables) that the report moves to its appendix."""
    return {"title": title, "blocks": blocks, "anchor": anchor, "answers": list(answers), "appendix": list(appendix)}


def answer_row(question: str, anchor: str, answer: str, number: str) -> dict:
    """One row of the answers table: the question, a short answer, and the number it rests on
    with its 95% interval (for a tie, with what the design detects: ``wording.table_number``)."""
    return {"question": question, "anchor": anchor, "answer": answer, "number": number}


def is_reference_data(schema: dict) -> bool:
    """Is this the table the reference hand-in was scored on?"""
    return schema.get("sha256") == REFERENCE_DATA_SHA256


def markdown_blocks(text: str) -> list[dict]:
    """Markdown (a template's output) as blocks: paragraphs split at blank lines, a paragraph
    that is one ``$$ … $$`` display an equation."""
    blocks = []
    for chunk in text.strip().split("\n\n"):
        chunk = chunk.strip()
        if not chunk:
            continue
        if chunk.startswith("$$") and chunk.endswith("$$") and len(chunk) > 4:
            blocks.append(equation(chunk[2:-2].strip()))
        else:
            blocks.append(paragraph(chunk))
    return blocks


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
