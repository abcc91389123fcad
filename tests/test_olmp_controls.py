"""benchmarks/olmp_controls.py: the cubic count schedule, pooled magnitude masks, the released
allocation against the zoo LeNets, and one short arm pruned to its per-layer counts."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import BENCHMARKS, load_benchmark
from keras_prune.data import load_dataset
from keras_prune.methods.olmp import OLMPSettings
from keras_prune.models import get_model

olmp_controls = load_benchmark("olmp_controls")


def test_counts_fall_from_every_entry_to_the_target_along_a_cubic_and_stay():
    sizes, targets = [1000, 50], [10, 5]
    assert olmp_controls.kept_counts(0.0, sizes, targets) == sizes
    assert olmp_controls.kept_counts(0.5, sizes, targets) == [10 + round(990 / 8), 5 + round(45 / 8)]
    assert olmp_controls.kept_counts(1.0, sizes, targets) == targets
    assert olmp_controls.kept_counts(3.0, sizes, targets) == targets
    path = [olmp_controls.kept_counts(f, sizes, targets)[0] for f in np.linspace(0, 1, 11)]
    assert path == sorted(path, reverse=True)


def test_magnitude_masks_keep_the_largest_entries_of_kernel_and_bias_pooled():
    kernel = np.array([[0.5, -3.0], [0.1, 2.0]])
    bias = np.array([-1.0, 0.05])
    kernel_mask, bias_mask = olmp_controls.magnitude_masks([kernel, bias], 3)
    np.testing.assert_array_equal(kernel_mask, [[0, 1], [0, 1]])
    np.testing.assert_array_equal(bias_mask, [1, 0])
    assert all(m.dtype == np.float32 for m in (kernel_mask, bias_mask))
    assert [m.sum() for m in olmp_controls.magnitude_masks([kernel, bias], 0)] == [0, 0]
    assert [m.sum() for m in olmp_controls.magnitude_masks([kernel, bias], 99)] == [4, 2]


@pytest.mark.parametrize("model, compression", [("lenet300_100", 113.50), ("lenet5", 297.71)])
def test_released_counts_name_the_zoo_layers_and_give_the_paper_compression(model, compression):
    net = get_model(model, (28, 28, 1), 10, seed=0)
    sizes = {name: sum(int(np.prod(w.shape)) for w in net.get_layer(name).weights)
             for name in olmp_controls.RELEASED[model]}
    released = olmp_controls.RELEASED[model]
    assert all(0 < released[name] < sizes[name] for name in released)
    assert round(sum(sizes.values()) / sum(released.values()), 2) == compression


def test_olmp_counts_are_the_recorded_runs_kept_entries():
    path = os.path.join(BENCHMARKS, "results", "olmp_vs_tfmot_lenet5.json")
    counts, recorded = olmp_controls.olmp_counts(path)
    assert set(counts) == {"conv1", "conv2", "ip1", "ip2"}
    assert sum(counts.values()) == recorded["olmp"]["nonzero_params"]


def test_an_arm_ends_at_its_counts_and_leaves_the_model_it_started_from_alone():
    keras.utils.set_random_seed(0)
    data = load_dataset("digits", batch_size=64, seed=0)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = get_model("lenet300_100", data.info.input_shape, data.info.num_classes, seed=0)
    before = [w.copy() for w in model.get_weights()]
    settings = OLMPSettings(iterations=30, prune_stop=20, weight_decay=5e-4)
    targets = {"ip1": 70, "ip2": 40, "ip3": 30}
    result = olmp_controls.run_arm("test", model, data, strategy, settings, targets, mask_every=5, eval_every=10)
    assert result["kept_per_layer"] == targets
    assert result["nonzero_params"] == 140 and result["compression"] == pytest.approx(result["params"] / 140)
    assert [t["iteration"] for t in result["trajectory"]] == [10, 20, 30]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    with pytest.raises(ValueError, match="Expected counts for the layers"):
        olmp_controls.run_arm("test", model, data, strategy, settings, {"ip1": 1}, mask_every=5, eval_every=10)
