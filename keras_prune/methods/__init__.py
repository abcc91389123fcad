"""The pruning methods. Each module has `run(model, data, ctx) -> MethodResult`.

A module may also have `preflight(model, config)`: the pipeline calls it right after
building the model, before pre-training it, so that bad input (an unreachable budget)
fails before any training. It must not draw random numbers (that would move a seeded
run's later draws).
"""

import importlib

__all__ = ["METHODS", "get_method"]

METHODS = ("l1", "lstm", "olmp", "rnp", "scratch", "slimming")
"""Methods this version ships; the command line's --method accepts exactly these."""


def get_method(name):
    """The module implementing method `name`."""
    if name not in METHODS:
        raise ValueError(f"Unknown method. Expected one of {METHODS}. Received: method={name!r}")
    return importlib.import_module(f"keras_prune.methods.{name}")
