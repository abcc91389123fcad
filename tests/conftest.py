"""Shared test set-up: two logical CPU devices (for real MirroredStrategy runs), a clean
Keras session per test, fixed seeds."""

import importlib.util
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_prune.training import make_strategy  # noqa: E402

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def load_benchmark(name):
    """The script `benchmarks/<name>.py` as a module (benchmarks/ is a folder of scripts, not a package)."""
    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)  # the scripts import their siblings (common, evidence)
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


@pytest.fixture(autouse=True)
def _clean_session():
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture(scope="session")
def mirrored():
    """One two-replica MirroredStrategy for the whole session.

    Each new strategy restarts TF's collective keys, and a collective of an earlier
    strategy in the same process can then clash with the new one's ("Shape mismatch in
    the collective instance 100"); a real run makes one strategy per process.
    """
    strategy = make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2, "conftest splits the CPU into two logical devices"
    return strategy


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


def tiny_resnet(input_shape=(8, 8, 1), classes=10, width=8):
    """conv-BN-ReLU stem, one residual block (internal group + tied residual group), head."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    stream = keras.layers.ReLU(name="stem_relu")(x)
    y = keras.layers.Conv2D(width + 4, 3, padding="same", use_bias=False, name="block_1")(stream)
    y = keras.layers.BatchNormalization(name="block_1_bn")(y)
    y = keras.layers.ReLU(name="block_1_relu")(y)
    y = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="block_2")(y)
    y = keras.layers.BatchNormalization(name="block_2_bn")(y)
    x = keras.layers.Add(name="add")([stream, y])
    x = keras.layers.ReLU(name="out_relu")(x)
    x = keras.layers.Conv2D(2 * width, 3, strides=2, padding="same", name="plain")(x)
    x = keras.layers.BatchNormalization(name="plain_bn")(x)
    x = keras.layers.ReLU(name="plain_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="tiny_resnet")


# Smoke-size settings per method for the runs that compare strategies (tests/test_strategy_methods.py,
# tests/test_multi_worker.py): small enough for CI, large enough that every phase runs.
METHOD_SMOKE = {
    "l1": dict(model="lenet5"),
    "scratch": dict(model="conv4"),
    "olmp": dict(model="lenet300_100", olmp_iterations=60, olmp_prune_stop=40, olmp_prune_interval=20,
                 olmp_population=4, olmp_budget=17),
    "lstm": dict(model="lenet5", lstm_epochs=1, lstm_children=2, lstm_parents=1, recovery_epochs=1),
    "rnp": dict(model="conv4", rnp_rounds=1, rnp_decision_steps=4, rnp_backbone_steps=4, rnp_warmup_steps=4,
                rnp_replay=256),
}


def structure(report):
    """(layer, channels after pruning) for every layer of a run's report."""
    return [(row["name"], row["channels_after"]) for row in report["layers"]]


def free_ports(count):
    """`count` distinct free TCP ports on the loopback interface."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_processes(commands, *, timeout):
    """Starts every `(argv, env)` at once and waits for all; returns `[(returncode, output)]`.

    Processes that talk to each other (a cluster, a tuner chief and its workers) must all
    run at the same time; any still running when one fails or times out is killed.
    """
    import subprocess

    processes = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
                 for argv, env in commands]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
        # Say which process hung and where each one was: the tail of every output.
        for process in processes:
            if process.poll() is None:
                process.kill()
        tails = []
        for index, process in enumerate(processes):
            output = outputs[index] if index < len(outputs) else process.communicate()[0]
            state = "hung, killed" if process.returncode == -9 else f"exit {process.returncode}"
            tails.append(f"--- process {index}: {state}\n" + "\n".join((output or "").splitlines()[-15:]))
        raise AssertionError(f"processes did not finish in {timeout} s:\n" + "\n".join(tails)) from None
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return [(process.returncode, output) for process, output in zip(processes, outputs)]
