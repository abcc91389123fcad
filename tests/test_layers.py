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
    GatedBatchNormalization,
    MaskedConv2D,
    MaskedDense,
    MaskedDepthwiseConv2D,
    group_sizes,
)

LAYERS = {
    "ChannelMask": (lambda: ChannelMask(prune_mask=[1, 0, 1, 1], name="m"), (2, 5, 5, 4)),
    "ChannelGate": (lambda: ChannelGate(initial_value=0.5, name="g"), (2, 5, 5, 4)),
    "GatedBatchNormalization": (
        lambda: GatedBatchNormalization(initial_gate=0.5, momentum=0.9, name="gbn"),
        (2, 5, 5, 4),
    ),
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


def _bn_then_gate(momentum):
    bn, gate = keras.layers.BatchNormalization(momentum=momentum), ChannelGate()
    return bn, gate, lambda x, training: gate(bn(x, training=training))


@pytest.mark.parametrize("training", [True, False])
def test_gated_batch_norm_is_batch_norm_then_gate(training, rng):
    """Same outputs, gate gradients and moving statistics as BatchNormalization + ChannelGate."""
    x = tf.constant(rng.normal(1.0, 2.0, size=(6, 3, 3, 4)).astype("float32"))
    fused = GatedBatchNormalization(momentum=0.9)
    bn, gate, separate = _bn_then_gate(0.9)
    fused.build(x.shape)
    bn.build(x.shape)
    gate.build(x.shape)
    values = {w.name: rng.uniform(0.5, 1.5, size=4).astype("float32") for w in bn.weights}
    values["gate"] = np.array([0.0, 0.3, 1.0, 0.6], "float32")
    for w in [*bn.weights, gate.gate, *fused.weights]:
        w.assign(values[w.name])
    results = []
    for call, variable in ((lambda x, training: fused(x, training=training), fused.gate), (separate, gate.gate)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = call(x, training=training)
            loss = tf.reduce_sum(y * tf.range(1.0, 5.0))
        results.append([y, *tape.gradient(loss, [variable, x])])
    for fused_value, separate_value in zip(*results):
        np.testing.assert_allclose(fused_value, separate_value, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused.moving_mean.numpy(), bn.moving_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(), bn.moving_variance.numpy(), rtol=1e-6)
    assert np.all(np.asarray(results[0][0])[..., 0] == 0), "a zero gate zeroes its channel exactly"


def test_gated_batch_norm_rejects_what_it_cannot_compute():
    with pytest.raises(ValueError, match="initial_gate"):
        GatedBatchNormalization(initial_gate=1.5)
    with pytest.raises(ValueError, match="scale=True and renorm=False"):
        GatedBatchNormalization(scale=False)
    with pytest.raises(ValueError, match="scale=True and renorm=False"):
        GatedBatchNormalization(renorm=True)
    with pytest.raises(ValueError, match="last .channel. axis"):
        GatedBatchNormalization(axis=1)(np.ones((2, 3, 4), "float32"))


def test_gated_batch_norm_under_a_mask_and_mixed_precision_is_batch_norm_then_gate(rng):
    tokens = np.array([[3, 5, 0, 0], [2, 0, 0, 0], [7, 1, 4, 6]])
    inputs = keras.Input((4,), dtype="int32")
    embedded = keras.layers.Embedding(10, 6, mask_zero=True, name="embed")(inputs)
    fused = GatedBatchNormalization(momentum=0.5, name="gbn")
    bn, gate, separate = _bn_then_gate(0.5)
    model = keras.Model(inputs, [fused(embedded, training=True), separate(embedded, training=True)])
    gates = rng.uniform(size=6).astype("float32")
    gate.gate.assign(gates)
    fused.gate.assign(gates)
    got, expected = model(tokens)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused.moving_mean.numpy(), bn.moving_mean.numpy(), rtol=1e-6, atol=1e-7)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        half = GatedBatchNormalization()
        half.build((None, 3, 3, 4))
        assert half.gate.dtype == half.gamma.dtype == "float32", "kept in float32 like gamma and beta"
        assert half(np.ones((2, 3, 3, 4), "float16"), training=True).dtype == "float16"
    finally:
        keras.config.set_dtype_policy(previous)
