"""Kubeflow Pipelines v2 components, the training pipeline, the promotion gate, the model registry.

Arrives with issue #5. May import ``stan_model``, ``feature_repo`` and ``stanflow.settings``.
"""
