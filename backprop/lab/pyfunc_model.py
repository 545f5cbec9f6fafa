"""MLflow models-from-code entry point: MLflow runs this file to get the model object, so the
logged model holds code and .npz weights, no pickle."""

from mlflow.models import set_model

from backprop.lab.pyfunc import BackpropModel

set_model(BackpropModel())
