"""keras_prune.criteria: the filter-norm criteria and the registry that makes criteria pluggable."""

import numpy as np
import pytest

from keras_prune.criteria import channel_scores, criterion_names, filter_norms, register_criterion, registry
from keras_prune.errors import PruneError
from keras_prune.graph import analyze
from keras_prune.methods.l1 import select_groups
from keras_prune.methods.lstm.settings import LSTMSettings

from conftest import tiny_resnet


@pytest.fixture
def group_and_graph():
    model = tiny_resnet(width=8)
    kernel = np.zeros(model.get_layer("block_1").kernel.shape, "float32")
    kernel[..., 0] = 0.1  # spread filter: L1 7.2, L2 0.85
    kernel[0, 0, 0, 1] = 3.0  # one-weight filter: L1 = L2 = 3
    model.get_layer("block_1").kernel.assign(kernel)
    graph = analyze(model)
    return next(g for g in select_groups(graph) if g.id == "block_1"), graph


def test_the_filters_of_a_transposed_conv_are_its_kernels_output_axis():
    import keras

    inputs = keras.Input((4, 4, 2))
    up = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", name="up")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(up))
    kernel = np.full(model.get_layer("up").kernel.shape, 0.01, "float32")  # (3, 3, out 3, in 2)
    kernel[:, :, 1, :] = 1.0
    model.get_layer("up").kernel.assign(kernel)
    graph = analyze(model)
    group = next(g for g in graph.prunable_groups if "up" in g.producers)
    np.testing.assert_allclose(filter_norms(graph, group), [0.18, 18.0, 0.18], rtol=1e-5)


@pytest.fixture
def private_registry(monkeypatch):
    monkeypatch.setattr(registry, "_CRITERIA", dict(registry._CRITERIA))


def test_built_in_criteria_are_the_l1_and_l2_filter_norms(group_and_graph):
    group, graph = group_and_graph
    l1, l2 = channel_scores(graph, group, "l1"), channel_scores(graph, group, "l2")
    np.testing.assert_allclose(l1, filter_norms(graph, group, order=1))
    np.testing.assert_allclose(l2, filter_norms(graph, group, order=2))
    assert l1[0] > l1[1] and l2[0] < l2[1], "the two norms rank a spread and a peaked filter differently"


def test_a_registered_criterion_scores_channels_and_is_a_valid_lstm_setting(group_and_graph, private_registry):
    group, graph = group_and_graph
    register_criterion("last_first", lambda graph, group: np.arange(group.size))
    assert criterion_names()[:2] == ("l1", "l2") and "last_first" in criterion_names()
    np.testing.assert_array_equal(channel_scores(graph, group, "last_first"), np.arange(group.size))
    assert LSTMSettings(criterion="last_first").criterion == "last_first"
    with pytest.raises(PruneError, match="register_criterion"):
        LSTMSettings(criterion="unregistered")


def test_bad_registrations_and_bad_scores_are_named(group_and_graph, private_registry):
    group, graph = group_and_graph
    with pytest.raises(ValueError, match="exists already"):
        register_criterion("l1", lambda graph, group: np.zeros(group.size), overwrite=True)
    with pytest.raises(ValueError, match="callable"):
        register_criterion("mine", "not a function")
    register_criterion("mine", lambda graph, group: np.zeros(3))
    with pytest.raises(ValueError, match="overwrite=True"):
        register_criterion("mine", lambda graph, group: np.zeros(3))
    with pytest.raises(PruneError, match=f"must return {group.size} finite scores"):
        channel_scores(graph, group, "mine")
    with pytest.raises(PruneError, match="Unknown channel criterion 'nope'"):
        channel_scores(graph, group, "nope")
