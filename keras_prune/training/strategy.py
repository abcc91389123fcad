"""Choosing the tf.distribute strategy every training loop runs under."""

import json
import os

import tensorflow as tf

from keras_prune.errors import PruneError

__all__ = ["STRATEGIES", "is_chief", "make_strategy", "task_name"]

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


def make_strategy(name="auto", *, tpu_address=None, log=None):
    """Returns a `tf.distribute.Strategy`.

    - auto: MirroredStrategy over all GPUs if there are several, else TensorFlow's default
      strategy (one device, no copies: on a small CPU it trains small convnets about 4x
      faster than an explicit OneDeviceStrategy, measured on ResNet-20 x0.5 / mnist5k).
    - one_device: OneDeviceStrategy on the first GPU, or the CPU.
    - mirrored: all GPUs, or all logical CPU devices when there is no GPU (used by the
      tests, which split the CPU into two logical devices). One instance per process and
      device set: each new MirroredStrategy restarts TF's collective keys, and a
      collective of an earlier one then clashes with the new one's ("Shape mismatch in
      the collective instance 100"), e.g. when a process runs the pipeline twice.
    - multi_worker: MultiWorkerMirroredStrategy; the cluster comes from `TF_CONFIG`. It must
      be made before any other TensorFlow call in the process.
    - tpu: TPUStrategy on `tpu_address` (or the TPU the environment names).

    `log(message)`, if given, hears that a TPU is being connected to: TensorFlow waits, silently and
    without a time limit, for an address that does not answer.
    """
    if name not in STRATEGIES:
        raise PruneError(f"Unknown strategy. Expected one of {STRATEGIES}. Received: strategy={name!r}")
    if name == "multi_worker":
        config = os.environ.get("TF_CONFIG")
        if not config or "cluster" not in json.loads(config):
            raise PruneError(
                "--strategy=multi_worker needs TF_CONFIG with a 'cluster' and a 'task' "
                "(see docs/distributed.md). Received: TF_CONFIG unset or without a cluster"
            )
        # Before anything else touches the runtime: collectives are configured at start-up.
        return _MultiWorkerMirrored()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if len(gpus) <= 1:
            return tf.distribute.get_strategy()
        name = "mirrored"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return _mirrored(tuple(devices))
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "")
    except ValueError as error:  # no TPU named and none in the environment
        raise PruneError(
            f"--strategy=tpu found no TPU ({error}): pass --tpu_address (a TPU name or grpc:// address), "
            "or run where the environment names one."
        ) from None
    if log is not None:
        log(f"strategy: connecting to the TPU at {resolver.master() or tpu_address}; TensorFlow waits until it "
            "answers (interrupt and check --tpu_address if this is the last line for minutes)")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


_MIRRORED = {}


def _mirrored(devices):
    if devices not in _MIRRORED:
        _MIRRORED[devices] = tf.distribute.MirroredStrategy(list(devices))
    return _MIRRORED[devices]


class _MultiWorkerMirrored(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy that takes the `reduce` calls Keras 3's `fit` makes.

    `fit` on MultiWorkerMirroredStrategy fails in Keras 3 (keras-team/keras#20585) in two
    places, both fixed here the way MirroredStrategy behaves:
    - it reduces the first (x, y) batch as one nest ("Attempt to convert a value
      (PerReplica ...)"): each leaf is reduced on its own;
    - it averages per-replica scalar metrics with `axis=0` ("Invalid reduction dimension
      0 for input with 0 dimensions"): a scalar is averaged across replicas (axis None).
    """

    def reduce(self, reduce_op, value, axis=None):  # Keras also calls reduce("SUM", v) without axis
        parent = super(_MultiWorkerMirrored, self)

        def leaf(v):
            rank = self.experimental_local_results(v)[0].shape.rank
            return parent.reduce(reduce_op, v, None if rank == 0 else axis)

        return tf.nest.map_structure(leaf, value)


def _task(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, None, {}
    return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()


def _tuner_id():
    """This process's Keras Tuner id in distributed tuning (KERASTUNER_TUNER_ID), else None."""
    return os.environ.get("KERASTUNER_TUNER_ID") if "KERASTUNER_ORACLE_IP" in os.environ else None


def is_chief(strategy):
    """True for the one process that writes the run's artefacts.

    The chief task of a multi-worker cluster (else worker 0); in Keras Tuner's distributed
    mode, the tuner chief. Single-process runs have one task, which is the chief.
    """
    tuner = _tuner_id()
    if tuner is not None:
        return "chief" in tuner  # Keras Tuner's own test (dist_utils.is_chief_oracle)
    task_type, task_id, cluster = _task(strategy)
    if task_type is None:
        return True
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)


def task_name(strategy):
    """`"worker1"`-style name of this process's task (the Keras Tuner id in distributed tuning;
    "" for single-process runs)."""
    if _tuner_id() is not None:
        return _tuner_id()
    task_type, task_id, _ = _task(strategy)
    return "" if task_type is None else f"{task_type}{task_id}"
