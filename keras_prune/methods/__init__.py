"""The pruning methods. Each module has `run(model, data, ctx) -> MethodResult`.

A module may also have `preflight(model, config)`: the pipeline calls it right after
building the model, before pre-training it, so that bad input (an unreachable budget)
fails before any training. It must not draw random numbers (that would move a seeded
run's later draws).
"""

import importlib

__all__ = ["GENERAL_SETTINGS", "METHODS", "READS", "get_method", "ignored_settings"]

METHODS = ("l1", "lstm", "olmp", "rnp", "scratch", "slimming")
"""Methods this version ships; the command line's --method accepts exactly these."""


GENERAL_SETTINGS = frozenset(
    {"target_flops", "epochs", "finetune_epochs", "round_to", "prune_residual", "schedule", "learning_rate",
     "label_smoothing", "weight_decay", "budget_train"}
)
"""Flags without a method's prefix that only some methods read (the pipeline reads none of them)."""

_RETRAIN = frozenset({"finetune_epochs", "schedule", "learning_rate", "label_smoothing", "weight_decay"})
_CHANNELS = frozenset({"target_flops", "round_to", "prune_residual"})
READS = {
    "l1": _RETRAIN | _CHANNELS,
    "lstm": _RETRAIN | _CHANNELS,
    "olmp": frozenset({"learning_rate", "weight_decay"}),  # its own schedule and iterations: --olmp_*
    "rnp": frozenset(),  # every setting of its own is an --rnp_* flag
    "scratch": _RETRAIN | _CHANNELS | {"epochs", "budget_train"},
    "slimming": _RETRAIN | _CHANNELS | {"epochs"},
}
"""The `GENERAL_SETTINGS` each method reads (tests/test_methods.py checks them against the code)."""


def ignored_settings(method, given):
    """The general settings among `given` (names) that `method` does not read, sorted."""
    return sorted(name for name in set(given) & GENERAL_SETTINGS if name not in READS[method])


def get_method(name):
    """The module implementing method `name`."""
    if name not in METHODS:
        raise ValueError(f"Unknown method. Expected one of {METHODS}. Received: method={name!r}")
    return importlib.import_module(f"keras_prune.methods.{name}")
