"""Derivative-free search: NCS (pure NumPy) and its Keras Tuner oracle.

`NCSOracle` is imported on first use, so `import keras_prune.search` stays NumPy-only.
"""

import importlib

from keras_prune.search.bhattacharyya import bhattacharyya_min
from keras_prune.search.ncs import NCS, NCSResult, minimize

__all__ = ["NCS", "NCSOracle", "NCSResult", "bhattacharyya_min", "minimize"]


def __getattr__(name):
    if name == "NCSOracle":
        return importlib.import_module("keras_prune.search.oracle").NCSOracle
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
