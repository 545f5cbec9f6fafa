"""backprop: a NumPy network whose backpropagation is the derivation in docs/reference.md.

Only the engine is imported here (NumPy only); the pipeline helpers in ``backprop.lab`` pull in
pandas, matplotlib and MLflow and are imported by the stages that need them.
"""

from backprop.activations import ACTIVATIONS
from backprop.initializers import INITIALIZERS
from backprop.losses import HEADS, TASKS
from backprop.mlp import MLP, History

__all__ = ["ACTIVATIONS", "HEADS", "INITIALIZERS", "MLP", "TASKS", "History"]
