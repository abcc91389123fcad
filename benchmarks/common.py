"""Where benchmark results go: benchmarks/results/, a temporary folder for --quick checks, or the
folder run_all.py names for its children (`KERAS_PRUNE_BENCH_RESULTS`)."""

import os
import tempfile

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
RESULTS_ENV = "KERAS_PRUNE_BENCH_RESULTS"


def results_dir(quick=False):
    """The folder this run writes its results file to (created if missing)."""
    folder = os.environ.get(RESULTS_ENV) or (tempfile.gettempdir() if quick else RESULTS)
    os.makedirs(folder, exist_ok=True)
    return folder
