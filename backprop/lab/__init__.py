"""The pipeline around the engine: config, data, training runs, tracking, figures, report.

Imported by the stages in ``stages/``; the engine itself (``backprop``) needs none of it.
"""

import os

# Nothing here may reach the network: MLflow's telemetry and DVC's analytics stay off in this
# process and in every one it starts (the tests' and benchmarks' subprocesses take them from here;
# the Makefile exports the same for the commands it runs).
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1"}

# Before anything imports MLflow or DVC.
for _name, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_name, _value)
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
