"""Training under a tf.distribute strategy: strategy choice, fit, evaluation."""

from keras_prune.training.fit import (
    SCHEDULES,
    compile_classifier,
    evaluate_accuracy,
    learning_rate_schedule,
    train_classifier,
)
from keras_prune.training.strategy import STRATEGIES, make_strategy

__all__ = [
    "SCHEDULES",
    "STRATEGIES",
    "compile_classifier",
    "evaluate_accuracy",
    "learning_rate_schedule",
    "make_strategy",
    "train_classifier",
]
