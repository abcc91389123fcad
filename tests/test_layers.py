"""Mask and gate layers: configs are complete, `.keras` round trips are exact, and the
gradients are the ones the methods need."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_prune.layers import (
    ChannelGate,
    ChannelGroupGate,
    ChannelMask,
    MaskedConv2D,
    MaskedDense,
    MaskedDepthwiseConv2D,
    group_sizes,
)

LAYERS = {
    "ChannelMask": (lambda: ChannelMask(prune_mask=[1, 0, 1, 1], name="m"), (2, 5, 5, 4)),
    "ChannelGate": (lambda: ChannelGate(initial_value=0.5, name="g"), (2, 5, 5, 4)),
    "MaskedDense": (lambda: MaskedDense(3, straight_through=True, activation="relu", name="d"), (2, 4)),
    "MaskedConv2D": (lambda: MaskedConv2D(3, 3, straight_through=True, padding="same", name="c"), (2, 5, 5, 4)),
    "MaskedDepthwiseConv2D": (
        lambda: MaskedDepthwiseConv2D(3, straight_through=True, depth_multiplier=2, name="dw"),
        (2, 5, 5, 4),
    ),
}


def _own_arguments(cls):
    """Constructor arguments a class adds (those of the Keras base are Keras's business)."""
    names = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("keras_prune"):
            names |= {
                p
                for p in inspect.signature(klass.__init__).parameters
                if p not in ("self", "args", "kwargs")
            }
    return names


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_constructor_argument_is_in_the_config(name):
    make, _ = LAYERS[name]
    layer = make()
    config = layer.get_config()
    missing = _own_arguments(type(layer)) - set(config)
    assert not missing, f"{name}.get_config() drops {missing}"
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_keras_round_trip_is_exact(name, tmp_path, rng):
    make, shape = LAYERS[name]
    inputs = keras.Input(shape[1:])
    layer = make()
    model = keras.Model(inputs, layer(inputs))
    for w in layer.weights:
        if "mask" in w.name:
            w.assign((rng.uniform(size=w.shape) > 0.3).astype("float32"))
        else:
            w.assign(rng.uniform(size=w.shape).astype("float32"))
    x = rng.normal(size=shape).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x), model(x))
    assert type(loaded.layers[-1]) is type(layer)


def test_masked_weights_are_masked_in_the_forward_pass(rng):
    layer = MaskedDense(2, use_bias=False)
    layer.build((None, 3))
    layer.kernel.assign(np.ones((3, 2), "float32"))
    layer.prune_mask.assign(np.array([[1, 0], [1, 0], [0, 1]], "float32"))
    np.testing.assert_array_equal(layer(np.ones((1, 3), "float32")), [[2.0, 1.0]])


@pytest.mark.parametrize("straight_through, expect_pruned_grad", [(True, True), (False, False)])
def test_straight_through_lets_pruned_weights_learn(straight_through, expect_pruned_grad):
    layer = MaskedConv2D(2, 1, straight_through=straight_through, use_bias=False)
    layer.build((None, 3, 3, 2))
    mask = np.ones((1, 1, 2, 2), "float32")
    mask[0, 0, 0, 0] = 0
    layer.prune_mask.assign(mask)
    x = tf.ones((1, 3, 3, 2))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x))
    grad = tape.gradient(loss, layer.kernel).numpy()
    assert (grad[0, 0, 0, 0] != 0) == expect_pruned_grad
    assert grad[0, 0, 1, 1] != 0


def test_channel_gate_is_clipped_to_the_unit_interval():
    gate = ChannelGate()
    inputs = keras.Input((4,))
    model = keras.Model(inputs, gate(inputs))
    optimizer = keras.optimizers.SGD(10.0)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(tf.ones((1, 4)))) * tf.constant([1.0])
    optimizer.apply_gradients(zip(tape.gradient(loss, [gate.gate]), [gate.gate]))
    np.testing.assert_array_equal(gate.gate.numpy(), np.zeros(4))
    with pytest.raises(ValueError, match="initial_value"):
        ChannelGate(initial_value=2.0)


def test_group_gate_keeps_leading_groups_per_sample():
    gate = ChannelGroupGate(groups=3)
    x = np.ones((3, 2, 2, 7), "float32")
    out = np.asarray(gate([x, np.array([1, 2, 3])]))
    assert group_sizes(7, 3) == [3, 2, 2]
    assert out[0, 0, 0].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert out[1, 0, 0].tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert out[2, 0, 0].tolist() == [1] * 7
    with pytest.raises(ValueError, match="groups must be in"):
        group_sizes(2, 3)


def test_channel_mask_rejects_a_wrong_length():
    with pytest.raises(ValueError, match="prune_mask has 2 values for 4 channels"):
        ChannelMask([1, 0])(np.ones((1, 4), "float32"))
