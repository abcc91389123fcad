"""Choosing the strategy: the default one on a single device, clear errors otherwise."""

import pytest
import tensorflow as tf

from keras_prune.errors import PruneError
from keras_prune.training import make_strategy
from keras_prune.training.strategy import is_chief, task_name


def test_auto_on_one_device_is_the_default_strategy():
    # An explicit OneDeviceStrategy trains small convnets ~4x slower on this CPU.
    strategy = make_strategy("auto")
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
    with strategy.scope():
        variable = tf.Variable(1.0)
    assert float(strategy.reduce("SUM", strategy.run(lambda: variable * 2), axis=None)) == 2.0


def test_one_device_is_still_available_on_request():
    assert isinstance(make_strategy("one_device"), tf.distribute.OneDeviceStrategy)


def test_unknown_strategy_names_the_choices():
    with pytest.raises(PruneError, match="Expected one of"):
        make_strategy("gpu_farm")


def test_multi_worker_without_tf_config_says_what_is_missing(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(PruneError, match="TF_CONFIG"):
        make_strategy("multi_worker")


def test_tpu_without_an_address_names_the_flag(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(PruneError, match="--tpu_address"):
        make_strategy("tpu")


def test_mirrored_is_one_instance_per_process():
    # A second MirroredStrategy would restart the collective keys and clash with the first.
    assert make_strategy("mirrored") is make_strategy("mirrored")


class _Resolver:
    def __init__(self, cluster, task_type, task_id):
        self._cluster, self.task_type, self.task_id = cluster, task_type, task_id

    def cluster_spec(self):
        return tf.train.ClusterSpec(self._cluster)


class _ClusterStrategy:
    def __init__(self, cluster, task_type, task_id):
        self.cluster_resolver = _Resolver(cluster, task_type, task_id)


@pytest.mark.parametrize(
    "cluster, task_type, task_id, chief, name",
    [
        ({"worker": ["a:1", "b:1"]}, "worker", 0, True, "worker0"),
        ({"worker": ["a:1", "b:1"]}, "worker", 1, False, "worker1"),
        ({"chief": ["c:1"], "worker": ["a:1"]}, "chief", 0, True, "chief0"),
        ({"chief": ["c:1"], "worker": ["a:1"]}, "worker", 0, False, "worker0"),
    ],
)
def test_only_the_chief_task_writes_the_run_folder(cluster, task_type, task_id, chief, name, monkeypatch):
    monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
    strategy = _ClusterStrategy(cluster, task_type, task_id)
    assert is_chief(strategy) is chief
    assert task_name(strategy) == name


def test_one_process_is_the_chief_and_keras_tuner_ids_name_the_others(monkeypatch):
    monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
    assert is_chief(tf.distribute.get_strategy()) and task_name(tf.distribute.get_strategy()) == ""
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner1")
    assert not is_chief(tf.distribute.get_strategy()) and task_name(tf.distribute.get_strategy()) == "tuner1"
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert is_chief(tf.distribute.get_strategy())
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner-chief")  # Keras Tuner serves the oracle here too
    assert is_chief(tf.distribute.get_strategy())


def test_a_tpu_connection_is_announced_before_tensorflow_waits_on_it(monkeypatch):
    heard = []

    def unanswered(resolver):
        raise TimeoutError("no TPU answers")  # where TensorFlow itself would wait without a word

    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", unanswered)
    with pytest.raises(TimeoutError):
        make_strategy("tpu", tpu_address="grpc://127.0.0.1:8470", log=heard.append)
    assert len(heard) == 1 and "connecting to the TPU at grpc://127.0.0.1:8470" in heard[0]
