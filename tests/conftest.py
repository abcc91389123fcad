"""Shared test set-up: two logical CPU devices (for real MirroredStrategy runs), a clean
Keras session per test, fixed seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


@pytest.fixture(autouse=True)
def _clean_session():
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_keep(graph, rng, fraction=0.3):
    """Keep for prune_channels that removes `fraction` of every prunable group at random."""
    keep = {}
    for group in graph.prunable_groups:
        n_keep = max(1, group.size - int(round(group.size * fraction)))
        keep[group.id] = np.sort(rng.choice(group.size, n_keep, replace=False))
    return keep
