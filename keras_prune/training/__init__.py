"""Training under a tf.distribute strategy: strategy choice, fit, evaluation."""

from keras_prune.training.fit import compile_classifier, evaluate_accuracy, train_classifier
from keras_prune.training.strategy import STRATEGIES, make_strategy

__all__ = ["STRATEGIES", "compile_classifier", "evaluate_accuracy", "make_strategy", "train_classifier"]
