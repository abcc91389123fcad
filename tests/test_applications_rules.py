"""Channel rules for keras.applications' own layers: InceptionResNetV2's CustomScaleLayer
and ConvNeXt's LayerScale couple and shrink channels instead of freezing them."""

import keras
import numpy as np
import pytest
from keras import layers

from keras_prune.graph import analyze, applications_rules, masked_reference, prune_channels


def _scaled_residual_model():
    """conv -> LayerScale, added to the stream by CustomScaleLayer (x + 0.2 * r), then a head."""
    x = keras.Input((6, 6, 3), name="pixels")
    stream = layers.Conv2D(6, 1, name="stream")(x)
    inner = layers.Conv2D(5, 3, padding="same", name="inner")(stream)
    branch = layers.Conv2D(6, 1, name="branch")(layers.ReLU()(inner))
    branch = applications_rules.LAYER_SCALE(0.5, 6, name="layer_scale")(branch)
    merged = applications_rules.CUSTOM_SCALE(0.2, name="custom_scale")([stream, branch])
    head = layers.Dense(3, name="head")(layers.GlobalAveragePooling2D()(merged))
    return keras.Model(x, head)


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx("float32")
    keras.config.set_dtype_policy("float32")


def test_both_classes_are_found_in_this_keras():
    assert applications_rules.CUSTOM_SCALE is not None and applications_rules.LAYER_SCALE is not None


def test_the_scaled_residual_stream_is_one_prunable_group_with_the_layer_scale():
    graph = analyze(_scaled_residual_model())
    assert set(graph.frozen_layers) == {"input pixels", "model output"}, graph.frozen_layers
    sizes = sorted(g.size for g in graph.prunable_groups)
    assert sizes == [5, 6], "the inner channels, and the stream tied to the branch by the residual sum"
    stream = next(g for g in graph.prunable_groups if g.size == 6)
    assert {m.layer for m in stream.members} >= {"stream", "branch", "layer_scale", "head"}


def test_pruning_through_both_layers_matches_the_masked_reference_and_reloads(rng, tmp_path, float64):
    model = _scaled_residual_model()
    model.get_layer("layer_scale").set_weights([rng.uniform(0.5, 1.5, 6)])
    graph = analyze(model)
    stream = next(g for g in graph.prunable_groups if g.size == 6)
    inner = next(g for g in graph.prunable_groups if g.size == 5)
    keep = {stream.id: [0, 2, 5], inner.id: [1, 4]}
    pruned = prune_channels(model, keep, graph=graph)
    assert pruned.get_layer("layer_scale").projection_dim == 3
    np.testing.assert_array_equal(pruned.get_layer("layer_scale").get_weights()[0],
                                  model.get_layer("layer_scale").get_weights()[0][[0, 2, 5]])
    x = rng.normal(size=(2, 6, 6, 3))
    got = pruned(x)
    np.testing.assert_allclose(got, masked_reference(model, keep, graph=graph)(x), rtol=1e-12, atol=1e-12)

    pruned.save(tmp_path / "pruned.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "pruned.keras")(x), got, rtol=1e-12, atol=1e-12)


def test_a_layer_scale_whose_gamma_does_not_match_the_channels_freezes_them():
    x = keras.Input((4, 4, 2))
    h = layers.Conv2D(4, 1, name="conv")(x)
    h = applications_rules.LAYER_SCALE(0.5, 1, name="shared_gamma")(h)  # one gamma broadcast over 4 channels
    graph = analyze(keras.Model(x, layers.Dense(2)(layers.Flatten()(h))))
    assert "shared_gamma" in graph.frozen_layers
