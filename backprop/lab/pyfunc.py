"""The trained network as an MLflow pyfunc model: raw feature columns in, predictions out."""

from __future__ import annotations

from importlib.metadata import version

import mlflow.pyfunc
import numpy as np
import pandas as pd

from backprop.mlp import MLP


def requirements() -> list[str]:
    # Stated, not inferred: inference imports the model in a subprocess and is slow.
    return [f"{name}=={version(name)}" for name in ("numpy", "pandas", "mlflow")]


class BackpropModel(mlflow.pyfunc.PythonModel):
    """Standardises with the training split's statistics, then runs the network."""

    def load_context(self, context) -> None:
        self.network = MLP.load(context.artifacts["weights"])
        with np.load(context.artifacts["scaler"], allow_pickle=False) as scaler:
            self.features = [str(name) for name in scaler["features"]]
            self.mean, self.std = scaler["mean"], scaler["std"]

    def predict(self, context, model_input: pd.DataFrame, params=None):
        missing = [name for name in self.features if name not in model_input.columns]
        if missing:
            raise ValueError(f"input is missing feature column(s) {missing}")
        X = model_input[self.features].to_numpy(dtype=float)
        return pd.Series(self.network.predict((X - self.mean) / self.std), name="prediction")
