"""Surgery: exact identity, equality with the zero-masked reference, smaller models,
and the pruned models survive `.keras` and SavedModel round trips. Swept over the zoo
and over keras.applications models (small inputs keep it fast)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import random_keep
from keras import layers

from keras_prune.graph import analyze, count_flops, count_params, masked_reference, prune_channels, reinitialize
from keras_prune.models import MODEL_NAMES, get_model

APPLICATIONS = {
    "ResNet50": lambda: keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10),
    "MobileNetV2": lambda: keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10),
    "VGG16": lambda: keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=10),
}
ZOO_SHAPES = {"alexnet": (32, 32, 3)}


def _zoo(name):
    return lambda: get_model(name, ZOO_SHAPES.get(name, (16, 16, 3)), 10, seed=0)


CASES = {**{f"zoo:{n}": _zoo(n) for n in MODEL_NAMES}, **{f"app:{n}": f for n, f in APPLICATIONS.items()}}


def _inputs(model, rng, batch=2):
    return rng.normal(size=(batch, *model.input_shape[1:])).astype(keras.config.floatx())


@pytest.fixture
def float64():
    """Exactness is checked in float64: in float32, a different channel count changes
    the summation order, and deep random networks amplify that rounding to ~1e-2."""
    # The dtype policy, not floatx, decides a new layer's dtypes once any layer exists.
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx("float32")
    keras.config.set_dtype_policy("float32")


def _randomise_batch_norm(model, rng):
    """Non-trivial BN statistics, so that dropping a channel's BN is really tested."""
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])


@pytest.mark.parametrize("case", sorted(CASES))
def test_surgery_matches_masked_reference(case, rng, tmp_path, float64):
    model = CASES[case]()
    _randomise_batch_norm(model, rng)
    graph = analyze(model)
    assert graph.prunable_groups, "every model in the sweep has something to prune"
    keep = random_keep(graph, rng, 0.3)
    pruned = prune_channels(model, keep, graph=graph)
    reference = masked_reference(model, keep, graph=graph)
    x = _inputs(model, rng)
    expected = reference(x)
    got = pruned(x)
    assert pruned.output_shape == model.output_shape and got.shape == (len(x), *model.output_shape[1:])
    assert got.dtype == "float64"
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=1e-6)
    assert count_flops(pruned).total < count_flops(model).total
    assert count_flops(pruned).total == count_flops(model, keep, graph=graph).total
    assert count_params(pruned).total == count_params(model, keep, graph=graph).total == pruned.count_params()

    reloaded_path = tmp_path / "pruned.keras"
    pruned.save(reloaded_path)
    reloaded = keras.models.load_model(reloaded_path)
    np.testing.assert_allclose(reloaded(x), got, atol=1e-6)

    pruned.export(str(tmp_path / "saved_model"), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "saved_model"))
    served = loaded.serve(tf.constant(x))
    assert served.dtype == tf.float64
    np.testing.assert_allclose(np.asarray(served), got, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["zoo:resnet20", "zoo:vgg16", "app:MobileNetV2"])
def test_surgery_keep_all_is_identity(case, rng):
    model = CASES[case]()
    graph = analyze(model)
    keep = {g.id: np.arange(g.size) for g in graph.prunable_groups}
    same = prune_channels(model, keep, graph=graph)
    x = _inputs(model, rng)
    np.testing.assert_array_equal(same(x), model(x))
    assert same.count_params() == model.count_params()


def test_shared_layer_keeps_its_weights_shared(rng):
    conv = layers.Conv2D(4, 3, padding="same", name="shared")
    x = keras.Input((8, 8, 3))
    a = conv(layers.Conv2D(3, 1, name="pre")(x))
    b = conv(layers.Conv2D(3, 1, name="pre2")(x))
    out = layers.Dense(2, name="head")(layers.Flatten()(layers.Add()([a, b])))
    model = keras.Model(x, out)
    graph = analyze(model)
    keep = {"shared": [0, 2]}
    coupled = [g for g in graph.groups if {"pre", "pre2"} & set(g.producers)]
    assert len(coupled) == 1 and {"pre", "pre2"} <= set(coupled[0].producers)
    pruned = prune_channels(model, keep, graph=graph)
    assert sum(isinstance(l, layers.Conv2D) and l.name == "shared" for l in pruned.layers) == 1
    x_in = _inputs(model, rng)
    np.testing.assert_allclose(
        pruned(x_in), masked_reference(model, keep)(x_in), atol=1e-5
    )


def test_a_channel_mask_shrinks_and_widens_with_its_channels(rng, tmp_path):
    from keras_prune.graph import expand_channels
    from keras_prune.layers import ChannelMask

    x = keras.Input((8, 8, 3))
    mask = [1.0, 0.0] * 8
    y = ChannelMask(mask, name="mask")(layers.Conv2D(16, 3, padding="same", name="conv")(x))
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(layers.Conv2D(8, 3, name="next")(y)))
    model = keras.Model(x, out)
    keep = {"conv": np.arange(12)}
    pruned = prune_channels(model, keep)
    np.testing.assert_array_equal(pruned.get_layer("mask").prune_mask.numpy(), mask[:12])
    x_in = _inputs(model, rng)
    np.testing.assert_allclose(pruned(x_in), masked_reference(model, keep)(x_in), atol=1e-5)
    pruned.save(tmp_path / "pruned.keras")
    reloaded = keras.models.load_model(tmp_path / "pruned.keras")
    np.testing.assert_allclose(reloaded(x_in), pruned(x_in), atol=1e-6)
    assert expand_channels(model, 1.5).get_layer("mask").prune_mask.shape == (24,)


def test_nested_model_is_inlined_by_surgery(rng):
    inner = keras.Sequential(
        [keras.Input((8, 8, 4)), layers.Conv2D(6, 3, name="conv"), layers.ReLU(name="relu")], name="block"
    )
    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 1, name="conv")(x)
    model = keras.Model(x, layers.Dense(2, name="head")(layers.Flatten()(inner(a))))
    keep = {"conv": [1, 3], "block/conv": [0, 5]}
    pruned = prune_channels(model, keep)
    assert {"conv", "block_conv"} <= {l.name for l in pruned.layers}
    x_in = _inputs(model, rng)
    np.testing.assert_allclose(
        pruned(x_in), masked_reference(model, keep)(x_in), atol=1e-5
    )


def test_a_nested_layer_named_like_an_input_of_the_model_is_renamed(rng):
    inner_input = keras.Input((4,))
    inner = keras.Model(inner_input, layers.Dense(4, name="features")(inner_input), name="inner")
    x = keras.Input((4,), name="features")
    model = keras.Model(x, layers.Dense(2, name="head")(inner(x)))
    pruned = prune_channels(model, {"inner/features": [0, 2]})
    assert "inner_features" in {l.name for l in pruned.layers}
    x_in = _inputs(model, rng)
    np.testing.assert_allclose(pruned(x_in), masked_reference(model, {"inner/features": [0, 2]})(x_in), atol=1e-5)


class _NoKwargs(layers.Layer):
    """A custom layer whose config does not round-trip: `from_config` passes `trainable`,
    `dtype` and `name`, which its `__init__` does not take."""

    def __init__(self, weighted=False):
        super().__init__()
        self.weighted = weighted

    def build(self, input_shape):
        if self.weighted:
            self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale if self.weighted else x * 2.0


def _model_around(frozen):
    x = keras.Input((4,))
    hidden = layers.Dense(6, name="hidden")(x)
    return keras.Model(x, layers.Dense(2, name="head")(frozen(layers.Dense(5, name="mixed")(hidden))))


@pytest.mark.parametrize(
    "frozen", [lambda: layers.Lambda(lambda t: t[..., ::-1] * 2.0, name="lambda"), lambda: _NoKwargs()],
    ids=["python_lambda", "custom_without_kwargs"],
)
def test_a_weightless_layer_whose_config_does_not_round_trip_is_kept_as_it_is(frozen, rng):
    model = _model_around(frozen())
    keep = {"hidden": [0, 2, 5]}
    pruned = prune_channels(model, keep)
    assert pruned.get_layer("hidden").units == 3
    x_in = _inputs(model, rng)
    np.testing.assert_allclose(pruned(x_in), masked_reference(model, keep)(x_in), atol=1e-5)


def test_a_weighted_layer_whose_config_does_not_round_trip_is_refused_by_name():
    model = _model_around(_NoKwargs(weighted=True))
    name = model.layers[-2].name
    with pytest.raises(ValueError, match=rf"Cannot rebuild layer '{name}' \(_NoKwargs\).*\*\*kwargs"):
        prune_channels(model, {"hidden": [0, 2, 5]})


class _Scale(layers.Layer):
    """A weight created without a name, as ConvNeXt's LayerScale does: Keras names it
    "variable_<global counter>", so a rebuilt copy's weight has another name."""

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gamma


def test_unnamed_weights_are_copied_by_position(rng):
    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 1, name="a")(x)
    b = _Scale(name="scale")(layers.Conv2D(5, 3, name="b")(a))
    model = keras.Model(x, layers.Dense(2, name="head")(layers.Flatten()(b)))
    model.get_layer("scale").set_weights([rng.uniform(0.5, 1.5, 5)])
    keep = {"a": [0, 2]}
    pruned = prune_channels(model, keep)
    np.testing.assert_array_equal(pruned.get_layer("scale").get_weights()[0], model.get_layer("scale").get_weights()[0])
    x_in = _inputs(model, rng)
    np.testing.assert_allclose(pruned(x_in), masked_reference(model, keep)(x_in), atol=1e-5)


def test_a_graph_deeper_than_the_recursion_limit_is_rebuilt(rng):
    # 700 layers build under Python's default limit of 1000 frames; the masked reference
    # doubles the depth, and Keras maps a functional graph recursively.
    x = keras.Input((4, 4, 2))
    h = layers.Conv2D(3, 1, name="a")(x)
    for _ in range(700):
        h = layers.ReLU()(h)
    model = keras.Model(x, layers.Dense(2, name="head")(layers.Flatten()(h)))
    keep = {"a": [0, 2]}
    reference = masked_reference(model, keep)
    x_in = _inputs(model, rng)
    np.testing.assert_allclose(prune_channels(model, keep)(x_in), reference(x_in), atol=1e-5)


@pytest.mark.parametrize("name", ["resnet20", "vgg16", "lenet5"])
def test_reinitialize_with_a_seed_draws_apart_what_the_zoo_seeded_the_same(name):
    model = get_model(name, (16, 16, 3), 10, width=0.25, seed=0)
    again = reinitialize(model)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights())), (
        "without a seed, a seeded model redraws the weights it was built with"
    )
    first, second, first_again = (reinitialize(model, seed=s) for s in (1, 2, 1))
    assert [w.shape for w in first.get_weights()] == [w.shape for w in model.get_weights()]
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Dense)):
            built, k1, k2, k1_again = (m.get_layer(layer.name).kernel.numpy() for m in (model, first, second, first_again))
            assert not np.array_equal(built, k1) and not np.array_equal(k1, k2), f"{layer.name}: a new draw per seed"
            assert np.array_equal(k1, k1_again), f"{layer.name}: the same seed draws the same weights"
            assert abs(k1.std() / built.std() - 1) < 0.5, f"{layer.name}: the same initializer, only reseeded"
        elif isinstance(layer, layers.BatchNormalization):
            assert np.array_equal(layer.gamma.numpy(), first.get_layer(layer.name).gamma.numpy()), "constants stay"


def test_weights_that_share_a_name_are_copied_by_position(rng):
    """Bidirectional's two LSTMs both call their weights kernel, recurrent_kernel and bias."""
    inputs = keras.Input((6, 4))
    recurrent = layers.Bidirectional(layers.LSTM(5), name="bi")
    hidden = layers.Dense(8, activation="relu", name="hidden")(recurrent(inputs))
    model = keras.Model(inputs, layers.Dense(3)(hidden))
    x = rng.normal(size=(2, 6, 4)).astype("float32")
    np.testing.assert_allclose(prune_channels(model, {})(x), model(x), atol=1e-6)
    keep = {"hidden": np.arange(4)}
    np.testing.assert_allclose(prune_channels(model, keep)(x), masked_reference(model, keep)(x), atol=1e-5)
    fresh = reinitialize(model, seed=1).get_layer("bi").weights
    forward, backward = fresh[0], fresh[len(fresh) // 2]  # the two LSTMs' kernels
    assert forward.name == backward.name == "kernel"
    assert not np.allclose(forward.numpy(), backward.numpy()), "each LSTM keeps its own fresh draw"


@pytest.mark.parametrize("dropout", [layers.Dropout, layers.AlphaDropout])
def test_a_dropout_noise_shape_that_names_the_channels_shrinks_with_them(dropout, rng):
    x = keras.Input((6, 6, 3))
    h = dropout(0.5, noise_shape=(None, 1, 1, 8), name="drop")(layers.Conv2D(8, 3, name="conv")(x))
    model = keras.Model(x, layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(h)))
    keep = {"conv": [0, 3, 5]}
    pruned = prune_channels(model, keep)
    assert tuple(pruned.get_layer("drop").noise_shape) == (None, 1, 1, 3)
    x_in = _inputs(model, rng)
    np.testing.assert_allclose(pruned(x_in), masked_reference(model, keep)(x_in), atol=1e-5)
    assert pruned(x_in, training=True).shape == (2, 2), "the noise broadcasts over the kept channels"


def test_a_shared_reshape_ties_the_channels_it_sizes_at_each_call(rng):
    reshape = layers.Reshape((16, 4), name="shared_reshape")
    x = keras.Input((4, 4, 3))
    a = reshape(layers.Conv2D(4, 1, name="a")(x))
    b = reshape(layers.Conv2D(4, 1, name="b")(x))
    flat = layers.Concatenate()([layers.Flatten()(a), layers.Flatten()(b)])  # nothing else ties a and b
    model = keras.Model(x, layers.Dense(2, name="head")(flat))
    graph = analyze(model)
    tied = [g for g in graph.groups if "a" in g.producers]
    assert len(tied) == 1 and "b" in tied[0].producers, "one config: both calls must keep the same channels"
    keep = {tied[0].id: [1, 2]}
    pruned = prune_channels(model, keep, graph=graph)
    assert pruned.get_layer("shared_reshape").target_shape == (16, 2)
    x_in = _inputs(model, rng)
    np.testing.assert_allclose(pruned(x_in), masked_reference(model, keep)(x_in), atol=1e-5)


def test_a_shared_reshape_sizing_different_channel_counts_freezes_them():
    flatten = layers.Reshape((64,), name="shared_flatten")
    x = keras.Input((4, 4, 3))
    a = flatten(layers.Conv2D(4, 1, name="a")(x))  # 4 x 4 x 4
    b = flatten(layers.Conv2D(16, 1, name="b")(layers.MaxPooling2D()(x)))  # 2 x 2 x 16
    model = keras.Model(x, layers.Dense(2, name="head")(layers.Concatenate()([a, b])))
    graph = analyze(model)
    assert not any({"a", "b"} & set(g.producers) for g in graph.prunable_groups)
    assert "different channel count at each call" in graph.frozen_layers["shared_flatten"]


@pytest.mark.parametrize("name", ["vgg16", "resnet20"])
def test_a_fresh_pruned_structure_is_the_reinitialised_pruned_model(name, rng):
    model = get_model(name, (16, 16, 3), 10, width=0.25, seed=0)  # the zoo seeds its initializers
    graph = analyze(model)
    keep = random_keep(graph, rng, fraction=0.5)
    fresh = prune_channels(model, keep, graph=graph, fresh=True)
    sliced = prune_channels(model, keep, graph=graph)
    two_step = reinitialize(sliced)
    assert [w.shape for w in fresh.weights] == [w.shape for w in sliced.weights]
    for a, b in zip(fresh.weights, two_step.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    kernels = [(a, b) for a, b in zip(fresh.weights, sliced.weights) if "kernel" in a.path]
    assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in kernels), "not the surviving weights"


def test_a_channel_listed_twice_is_refused_not_kept_once():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, name="conv")(inputs)
    model = keras.Model(inputs, layers.Dense(2)(layers.GlobalAveragePooling2D()(x)))
    graph = analyze(model)
    group = next(g.id for g in graph.groups if g.prunable)
    with pytest.raises(ValueError, match=r"lists channels \[1\] more than once"):
        prune_channels(model, {group: [0, 1, 1, 2]}, graph=graph)
    assert prune_channels(model, {group: [2, 0, 1]}, graph=graph).get_layer("conv").filters == 3
