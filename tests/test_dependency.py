"""Channel-dependency analysis: which channels are coupled, which are frozen and why."""

import keras
import numpy as np
import pytest
from keras import layers

from keras_prune.graph import (
    analyze, channel_groups, count_flops, expand_channels, expanded_widths, masked_reference, passthrough,
    prune_channels, register_channel_rule,
)
from keras_prune.methods.budget import global_budget, min_reachable_ratio, uniform_budget


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


@pytest.mark.parametrize("bounds", [np.array, list], ids=["array", "list"])
def test_keras_op_holding_a_per_channel_constant_is_frozen(bounds):
    # keras.ops.clip keeps its bounds on the operation, not among the call's arguments.
    x = keras.Input((5, 5, 3))
    a = layers.Conv2D(4, 3, name="a")(x)
    h = keras.ops.clip(a, bounds([0.0, -1.0, 0.0, -1.0]), bounds([6.0, 1.0, 6.0, 1.0]))
    groups = _ids(analyze(keras.Model(x, layers.Conv2D(2, 1, name="out")(h))))
    assert not groups["a"].prunable and "array constant in Clip" in groups["a"].reason


def test_keras_op_holding_scalar_constants_stays_prunable(rng):
    x = keras.Input((5, 5, 3))
    a = layers.Conv2D(4, 3, name="a")(x)
    h = keras.ops.leaky_relu(keras.ops.clip(a, -1.0, 6.0), negative_slope=0.3)
    model = keras.Model(x, layers.Conv2D(2, 1, name="out")(h))
    graph = analyze(model)
    assert _ids(graph)["a"].prunable, graph.frozen_layers
    keep = {"a": np.array([0, 3])}
    xs = rng.normal(size=(2, 5, 5, 3)).astype("float32")
    np.testing.assert_allclose(prune_channels(model, keep, graph=graph)(xs),
                               masked_reference(model, keep, graph=graph)(xs), atol=1e-5)


def test_a_shared_weightless_layer_at_two_widths_gives_each_call_its_channels(rng):
    x = keras.Input((8,))
    softmax = layers.Softmax()
    left = layers.Dense(4, name="left")(softmax(layers.Dense(3, name="three")(x)))
    right = layers.Dense(4, name="right")(softmax(layers.Dense(5, name="five")(x)))
    model = keras.Model(x, layers.Concatenate()([left, right]))
    xs = rng.normal(size=(2, 8)).astype("float32")
    np.testing.assert_allclose(prune_channels(model, {})(xs), model(xs), atol=1e-6)
    graph = analyze(model)
    groups = _ids(graph)
    assert not groups["three"].prunable and not groups["five"].prunable  # a softmax mixes its channels
    assert len(groups) == len(graph.groups), "every group has an id of its own"


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
        (lambda: layers.Activation("softmax"), "softmax over channels"),
        (lambda: layers.Activation("log_softmax"), "softmax over channels"),
        (lambda: layers.Activation("sparsemax"), "softmax over channels"),
        (lambda: layers.Activation(layers.Softmax()), "softmax over channels"),  # a layer: no name to trust
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


def test_a_softmax_activation_freezes_the_channels_it_normalises_not_the_ones_before():
    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(8, 3, name="a")(x)
    b = layers.Conv2D(6, 1, activation="softmax", name="b")(a)  # normalises b's outputs only
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(b))
    groups = _ids(analyze(keras.Model(x, out)))
    assert groups["a"].prunable
    assert not groups["b"].prunable and "softmax over channels" in groups["b"].reason
    relu = keras.Model(x, layers.Dense(2)(layers.Flatten()(layers.Activation("relu")(layers.Conv2D(4, 1, name="c")(x)))))
    assert _ids(analyze(relu))["c"].prunable, "other activations act channel by channel"


def test_a_one_channel_map_broadcast_into_multiply_stays_one_channel():
    x = keras.Input((8, 8, 3))
    h = layers.Conv2D(16, 3, padding="same", name="h")(x)
    attention = layers.Conv2D(1, 1, activation="sigmoid", name="attention")(h)
    y = layers.Multiply()([h, attention])
    out = layers.Dense(10, name="head")(layers.GlobalAveragePooling2D()(y))
    graph = analyze(keras.Model(x, out))
    groups = _ids(graph)
    assert groups["h"].prunable and "attention" not in groups["h"].producers
    assert not groups["attention"].prunable and "broadcast" in groups["attention"].reason
    assert "attention" not in expanded_widths(graph, 2.0), "widening it would break the Multiply"
    expand_channels(keras.Model(x, out), 2.0)


def _concatenation_joined_by_add():
    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(8, 3, padding="same", name="a")(x)
    b = layers.Conv2D(8, 3, padding="same", name="b")(x)
    c = layers.Conv2D(16, 3, padding="same", name="c")(x)
    y = layers.Add()([layers.Concatenate()([a, b]), c])
    out = layers.Dense(10, name="head")(layers.GlobalAveragePooling2D()(layers.Conv2D(4, 1, name="d")(y)))
    return keras.Model(x, out)


def test_a_concatenation_joined_by_add_keeps_a_channel_of_every_producer():
    """Add(Concatenate(a, b), c): one group of 16 that a and b each make half of; a cut that
    spares none of b's half would leave b no filters."""
    model = _concatenation_joined_by_add()
    graph = analyze(model)
    group = _ids(graph)["a"]
    assert set(group.producers) == {"a", "b", "c"} and group.size == 16 and group.prunable
    assert [(path, part.tolist()) for path, part in graph.segments["a"]] == [
        ("a", list(range(8))), ("b", list(range(8, 16)))]
    with pytest.raises(ValueError, match="leaves layer 'b' no channel"):
        prune_channels(model, {"a": [0, 3]}, graph=graph)
    assert graph.covering("a", [0, 3]).tolist() == [0, 3, 8]
    assert graph.covering("a", [0, 3], order=np.arange(16)[::-1]).tolist() == [0, 3, 15], "b's best-ranked"
    assert graph.covering("a", [0, 9]).tolist() == [0, 9]
    pruned = prune_channels(model, {"a": graph.covering("a", [0, 3])}, graph=graph)
    assert [pruned.get_layer(n).filters for n in "abc"] == [2, 1, 3]
    scores = {"a": np.r_[np.ones(8), np.zeros(8)], "d": np.ones(4)}  # a's channels rank first
    floor = min_reachable_ratio(graph, [group])
    assert floor == count_flops(model, {"a": [0, 8]}, graph=graph).total / count_flops(model).total
    for budget in (uniform_budget(graph, [group], scores, floor), global_budget(graph, [group], scores, floor)):
        assert any(i >= 8 for i in budget.keep["a"]), "b keeps its best channel"
        prune_channels(model, budget.keep, graph=graph)
    assert budget["counts"]["a"] == len(budget.keep["a"]), "the reported count includes the added channel"
    assert count_flops(model, graph=graph, widths={"a": 1}).total == count_flops(model, {"a": [0, 8]}, graph=graph).total


@pytest.mark.parametrize("base", [layers.Add, layers.Activation, layers.GlobalAveragePooling2D, layers.Flatten])
def test_a_weightless_layer_type_subclassed_with_a_per_channel_weight_is_frozen(base):
    class WithScale(base):
        def build(self, input_shape):
            shape = input_shape[0] if isinstance(input_shape, list) else input_shape
            self.scale = self.add_weight(name="scale", shape=(shape[-1],), initializer="ones")
            super().build(input_shape)

    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 1, name="a")(x)
    args = ([a, a],) if base is layers.Add else (a,)
    extra = ("relu",) if base is layers.Activation else ()
    y = WithScale(*extra, name="custom")(*args)
    if len(y.shape) == 4:
        y = layers.GlobalAveragePooling2D()(y)
    out = layers.Dense(1, name="head")(y)
    group = _ids(analyze(keras.Model(x, out)))["a"]
    assert not group.prunable and "unrecognised weights" in group.reason
