"""Channel-dependency analysis: which channels are coupled, which are frozen and why."""

import keras
import numpy as np
import pytest
from keras import layers

from keras_prune.graph import analyze, channel_groups, register_channel_rule, passthrough


def _ids(graph):
    return {g.id: g for g in graph.groups}


def test_plain_chain_gives_one_group_per_hidden_layer():
    x = keras.Input((8, 8, 3))
    h = layers.Conv2D(4, 3, name="c1")(x)
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.Flatten()(layers.ReLU()(h))
    out = layers.Dense(2, name="fc")(h)
    groups = _ids(analyze(keras.Model(x, out)))
    assert groups["c1"].prunable and groups["c1"].size == 4
    layers_in_c1 = {(m.layer, m.weight, m.axis) for m in groups["c1"].members}
    assert layers_in_c1 == {
        ("c1", "kernel", -1),
        ("c1", "bias", 0),
        ("bn", "gamma", 0),
        ("bn", "beta", 0),
        ("bn", "moving_mean", 0),
        ("bn", "moving_variance", 0),
        ("fc", "kernel", 0),
    }
    fc_rows = next(m for m in groups["c1"].members if m.layer == "fc")
    assert fc_rows.index_map.size == 6 * 6 * 4
    assert fc_rows.positions(1).tolist() == list(range(1, 144, 4))
    assert not groups["fc"].prunable and "output" in groups["fc"].reason
    assert not groups["input:input_layer"].prunable


def test_residual_add_couples_both_branches():
    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(6, 1, name="a")(x)
    b = layers.Conv2D(6, 3, padding="same", name="b")(a)
    s = layers.Add(name="add")([a, b])
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(s))
    groups = _ids(analyze(keras.Model(x, out)))
    assert "b" not in groups
    assert groups["a"].producers == ("a", "b") and groups["a"].size == 6


def test_concatenate_maps_offsets_without_coupling():
    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(2, 1, name="a")(x)
    b = layers.Conv2D(3, 1, name="b")(x)
    c = layers.Concatenate()([a, b])
    out = layers.Conv2D(4, 1, name="after")(c)
    out = layers.Dense(1, name="head")(layers.Flatten()(out))
    groups = _ids(analyze(keras.Model(x, out)))
    rows_b = next(m for m in groups["b"].members if m.layer == "after")
    assert rows_b.index_map.tolist() == [-1, -1, 0, 1, 2]
    assert groups["a"].size == 2 and groups["b"].size == 3


def test_depthwise_multiplier_repeats_channels():
    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 1, name="a")(x)
    d = layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(a)
    out = layers.Dense(1, name="head")(layers.GlobalAveragePooling2D()(d))
    group = _ids(analyze(keras.Model(x, out)))["a"]
    dw_bias = next(m for m in group.members if m.layer == "dw" and m.weight == "bias")
    assert dw_bias.index_map.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_squeeze_excite_multiply_couples_gate_and_features():
    x = keras.Input((8, 8, 3))
    f = layers.Conv2D(8, 3, padding="same", name="features")(x)
    s = layers.GlobalAveragePooling2D(keepdims=True)(f)
    s = layers.Conv2D(2, 1, activation="relu", name="squeeze")(s)
    s = layers.Conv2D(8, 1, activation="sigmoid", name="excite")(s)
    y = layers.Multiply()([f, s])
    out = layers.Dense(1, name="head")(layers.GlobalAveragePooling2D()(y))
    groups = _ids(analyze(keras.Model(x, out)))
    assert set(groups["features"].producers) == {"features", "excite"}
    assert groups["squeeze"].prunable


def test_keras_op_arithmetic_with_scalars_passes_channels_through(rng):
    # Hard-swish as MobileNetV3 writes it: keras.ops operations, not layers, in the graph.
    from keras_prune.graph import masked_reference, prune_channels

    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(6, 3, name="a")(x)
    h = a * (keras.ops.relu6(a + 3.0) / 6.0)
    out = layers.Dense(2, name="head")(layers.Flatten()(layers.Conv2D(4, 1, name="c")(h)))
    model = keras.Model(x, out)
    graph = analyze(model)
    assert _ids(graph)["a"].prunable, graph.frozen_layers
    keep = {"a": np.array([0, 2, 5])}
    xs = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(prune_channels(model, keep, graph=graph)(xs),
                               masked_reference(model, keep, graph=graph)(xs), atol=1e-5)


def test_keras_op_arithmetic_with_a_per_channel_constant_is_frozen():
    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(6, 3, name="a")(x)
    h = a + np.arange(6, dtype="float32")  # the constant would have to shrink with the channels
    out = layers.Dense(2, name="head")(layers.Flatten()(h))
    groups = _ids(analyze(keras.Model(x, out)))
    assert not groups["a"].prunable and "array constant" in groups["a"].reason


def test_unknown_layer_freezes_the_channels_it_touches():
    class Opaque(layers.Layer):
        def call(self, x):
            return x[..., ::-1]

    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 1, name="a")(x)
    b = Opaque(name="opaque")(a)
    c = layers.Conv2D(5, 1, name="c")(b)
    out = layers.Dense(1, name="head")(layers.Flatten()(c))
    graph = analyze(keras.Model(x, out))
    groups = _ids(graph)
    assert not groups["a"].prunable and "Opaque" in groups["a"].reason
    assert not groups["opaque"].prunable
    assert groups["c"].prunable
    assert "opaque" in graph.frozen_layers


def test_custom_layer_opts_in_through_the_registry():
    @keras.saving.register_keras_serializable(package="tests")
    class Scale(layers.Layer):
        def build(self, shape):
            self.scale = self.add_weight(name="scale", shape=(shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.scale

    register_channel_rule(Scale)(_scale_rule)
    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 1, name="a")(x)
    b = Scale(name="scale")(a)
    out = layers.Dense(1, name="head")(layers.Flatten()(b))
    group = _ids(analyze(keras.Model(x, out)))["a"]
    assert group.prunable
    assert ("scale", "scale", 0) in {(m.layer, m.weight, m.axis) for m in group.members}


def _scale_rule(ctx, call, layer, inputs, in_shapes, out_shapes):
    ctx.member(layer, "scale", 0, inputs[0])
    return passthrough(ctx, call, layer, inputs, in_shapes, out_shapes)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: layers.LayerNormalization(), "span the channel axis"),
        (lambda: layers.Softmax(), "softmax over channels"),
        (lambda: layers.Conv2D(4, 1, groups=2), "grouped convolution"),
    ],
)
def test_layers_that_mix_channels_statistically_are_frozen(make, reason):
    x = keras.Input((8, 8, 4))
    a = layers.Conv2D(4, 1, name="a")(x)
    b = make()(a)
    out = layers.Dense(1, name="head")(layers.Flatten()(b))
    group = _ids(analyze(keras.Model(x, out)))["a"]
    assert not group.prunable and reason in group.reason


def test_nested_and_sequential_models_are_inlined():
    inner = keras.Sequential(
        [keras.Input((8, 8, 4)), layers.Conv2D(6, 3, name="inner_conv"), layers.ReLU()],
        name="block",
    )
    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 1, name="a")(x)
    out = layers.Dense(1, name="head")(layers.Flatten()(inner(a)))
    groups = _ids(analyze(keras.Model(x, out)))
    assert groups["a"].prunable
    assert groups["block/inner_conv"].prunable
    assert ("block/inner_conv", "kernel", -2) in {
        (m.layer, m.weight, m.axis) for m in groups["a"].members
    }


def test_subclassed_model_is_refused_with_advice():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="functional and Sequential"):
        channel_groups(Net())


def test_group_ids_come_from_layer_names_and_are_stable():
    def build():
        keras.utils.set_random_seed(1)
        x = keras.Input((8, 8, 3), name="image")
        h = layers.Conv2D(4, 3, name="c")(x)
        return keras.Model(x, layers.Dense(2, name="d")(layers.Flatten()(h)))

    assert [g.id for g in channel_groups(build())] == [g.id for g in channel_groups(build())]


def test_keep_validation_names_the_problem():
    x = keras.Input((8, 8, 3))
    h = layers.Conv2D(4, 3, name="c")(x)
    graph = analyze(keras.Model(x, layers.Dense(2, name="d")(layers.Flatten()(h))))
    with pytest.raises(KeyError, match="Valid ids"):
        graph.alive({"nope": [0]})
    with pytest.raises(ValueError, match="at least one channel"):
        graph.alive({"c": []})
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        graph.alive({"c": [7]})
    with pytest.raises(ValueError, match="frozen"):
        graph.alive({"d": [0]})
    assert graph.alive({"c": np.arange(4)}).all()
