"""Training and evaluation: one trainer for every model (single process or DDP under torchrun),
the evaluation that scores a model on a split, and :func:`run_experiment`, the one call the CLI
and the benchmarks share."""

from stan_model.training.evaluation import evaluate, predict
from stan_model.training.experiment import match_budget, run_experiment
from stan_model.training.trainer import TrainConfig, TrainResult, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "match_budget",
    "predict",
    "run_experiment",
    "train",
]
