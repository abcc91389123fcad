"""Choosing the strategy: the default one on a single device, clear errors otherwise."""

import pytest
import tensorflow as tf

from keras_prune.errors import PruneError
from keras_prune.training import make_strategy


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


def test_mirrored_is_one_instance_per_process():
    # A second MirroredStrategy would restart the collective keys and clash with the first.
    assert make_strategy("mirrored") is make_strategy("mirrored")
