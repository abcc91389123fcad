"""One process of the distributed NCS test (tests/test_olmp_distributed.py); not collected by pytest.

Runs OLMP's `search_crates` on a shifted sphere, logging every candidate it evaluates, and
prints the outcome as JSON. Keras Tuner's environment variables make it the chief or a worker.
"""

import json
import sys
import time

import numpy as np

from keras_prune.methods.olmp.search import search_crates
from keras_prune.methods.olmp.settings import OLMPSettings

NAMES = [f"layer_{i}" for i in range(4)]
SETTINGS = OLMPSettings(population=4, budget=41, sigma=((0, 1.0),), seed=3)
SHIFT = np.array([2.0, 3.0, 4.0, 5.0])


def search(directory, log, delay=0.0, resume=False):
    def fitness(crates):
        time.sleep(delay)  # as a real evaluation takes time, so that both workers get trials
        with open(log, "a") as f:
            f.write(json.dumps([float(v) for v in crates]) + "\n")
        return float(np.sum((crates - SHIFT) ** 2))

    return search_crates(fitness, names=NAMES, initial=np.ones(4), settings=SETTINGS, iteration=1000,
                         directory=directory, resume=resume)


if __name__ == "__main__":
    outcome = search(sys.argv[1], sys.argv[2], delay=0.25)
    print("OUTCOME " + json.dumps({"crates": outcome.crates.tolist(), "fitness": outcome.fitness}), flush=True)
