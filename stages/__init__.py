"""DVC stages: one module each, run as ``python -m stages.<name>`` (see dvc.yaml)."""
