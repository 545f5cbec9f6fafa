import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def diabetes():
    """All 442 rows, features standardised, target unscaled: the reference hand-in's protocol."""
    frame = pd.read_csv(ROOT / "data" / "diabetes.csv")
    X = frame.drop(columns="progression").to_numpy(float)
    return (X - X.mean(axis=0)) / X.std(axis=0), frame["progression"].to_numpy(float)
