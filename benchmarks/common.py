"""Where benchmark results go: benchmarks/results/, a temporary folder for --quick checks, or the
folder run_all.py names for its children (`KERAS_PRUNE_BENCH_RESULTS`).

A benchmark run with seed 0 writes `<stem>.json`; with another seed, `<stem>_seed<N>.json`,
so that repeats with other seeds sit beside it and `tabulate_results` can put them together.
"""

import os
import re
import tempfile

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
RESULTS_ENV = "KERAS_PRUNE_BENCH_RESULTS"
SEED_SUFFIX = re.compile(r"_seed(\d+)$")


def results_dir(quick=False):
    """The folder this run writes its results file to (created if missing)."""
    folder = os.environ.get(RESULTS_ENV) or (tempfile.gettempdir() if quick else RESULTS)
    os.makedirs(folder, exist_ok=True)
    return folder


def results_name(stem, seed=0):
    """The results file name of a benchmark run: `<stem>.json` for seed 0, else `<stem>_seed<N>.json`."""
    return f"{stem}{f'_seed{seed}' if seed else ''}.json"


def split_seed(name):
    """(`<stem>`, seed) of a results file name written by `results_name` (seed 0 without a suffix)."""
    stem = os.path.splitext(os.path.basename(name))[0]
    match = SEED_SUFFIX.search(stem)
    return (stem[: match.start()], int(match.group(1))) if match else (stem, 0)
