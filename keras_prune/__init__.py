"""keras_prune: make Keras 3 models smaller and faster, and measure it.

Importing this package is cheap and free of side effects: subpackages are imported
on first use, and `tensorflow_model_optimization` is never imported from here.
"""

import importlib

from keras_prune.version import __version__

__all__ = [
    "__version__",
    "agents",
    "criteria",
    "data",
    "errors",
    "export",
    "graph",
    "layers",
    "methods",
    "models",
    "pipeline",
    "search",
    "training",
]

_SUBPACKAGES = frozenset(__all__) - {"__version__"}


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"keras_prune.{name}")
    raise AttributeError(f"module 'keras_prune' has no attribute {name!r}")
