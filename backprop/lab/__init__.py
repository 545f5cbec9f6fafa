"""The pipeline around the engine: config, data, training runs, tracking, figures, report.

Imported by the stages in ``stages/``; the engine itself (``backprop``) needs none of it.
"""

import os

# Before anything imports MLflow or DVC: nothing here may reach the network.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
