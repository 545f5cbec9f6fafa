"""The report's building blocks (paragraphs, equations, tables, figures, code, sections) and how
its numbers are written. No I/O."""

from __future__ import annotations

import math

import numpy as np

# docs/reference.md, "The reference answer to beat": not from this run.
REFERENCE_HAND_IN = {"mse": 2858.4015, "accuracy": 0.6107}
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
