"""Rendering: per-trial train config, MLflow tags, and the Kubernetes objects."""
