"""strip(): a plain Keras model, physically smaller where gates zeroed channels, with the
same outputs."""

import json
import zipfile

import keras
import numpy as np
import pytest
from keras import layers

import keras_prune
from keras_prune.export import strip
from keras_prune.graph import count_flops
from keras_prune.layers import ChannelGate, ChannelGroupGate, ChannelMask, GatedBatchNormalization
from keras_prune.layers import MaskedConv2D, MaskedDense
from keras_prune.models import get_model
from keras_prune.models._common import FanOutNormal


def _no_keras_prune_layers(model):
    return all(not type(l).__module__.startswith("keras_prune") for l in model.layers)


def _gated_net(gate):
    x = keras.Input((8, 8, 3))
    h = layers.Conv2D(6, 3, padding="same", name="c1")(x)
    h = layers.BatchNormalization(name="bn1")(h)
    h = gate(h)
    h = layers.ReLU()(h)
    h = MaskedConv2D(5, 3, padding="same", name="c2")(h)
    h = layers.Flatten()(h)
    return keras.Model(x, MaskedDense(3, name="fc")(h))


def test_strip_removes_zero_gated_channels_and_folds_the_rest(rng):
    gate = ChannelGate(name="gate")
    model = _gated_net(gate)
    bn = model.get_layer("bn1")
    bn.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in bn.get_weights()])
    gate.gate.assign(np.array([0.0, 0.3, 1.0, 0.0, 0.7, 1.0], "float32"))
    c2 = model.get_layer("c2")
    c2.prune_mask.assign((rng.uniform(size=c2.prune_mask.shape) > 0.5).astype("float32"))
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    stripped = strip(model)
    assert _no_keras_prune_layers(stripped)
    assert stripped.get_layer("c1").filters == 4
    np.testing.assert_allclose(stripped(x), model(x), atol=1e-4)
    assert count_flops(stripped).total < count_flops(model).total


def test_strip_turns_a_gated_batch_norm_into_a_smaller_batch_norm(rng):
    x = keras.Input((8, 8, 3))
    h = layers.Conv2D(6, 3, padding="same", name="c1")(x)
    gated_bn = GatedBatchNormalization(name="bn1")
    h = layers.ReLU()(gated_bn(h))
    model = keras.Model(x, layers.Dense(3, name="fc")(layers.Flatten()(layers.Conv2D(5, 3, name="c2")(h))))
    for w in gated_bn.weights:
        w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    gated_bn.gate.assign(np.array([0.0, 0.3, 1.0, 0.0, 0.7, 1.0], "float32"))
    inputs = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    stripped = strip(model)
    assert _no_keras_prune_layers(stripped)
    assert type(stripped.get_layer("bn1")) is layers.BatchNormalization
    assert stripped.get_layer("c1").filters == 4
    np.testing.assert_allclose(stripped(inputs), model(inputs), atol=1e-4)


def test_strip_of_binary_channel_mask(rng):
    model = _gated_net(ChannelMask([1, 0, 1, 0, 1, 1], name="mask"))
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    stripped = strip(model)
    assert stripped.get_layer("c1").filters == 4
    np.testing.assert_allclose(stripped(x), model(x), atol=1e-4)


def test_strip_keeps_channels_still_used_elsewhere(rng):
    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 1, name="a")(x)
    gated = ChannelMask([0, 1, 1, 1], name="mask")(layers.BatchNormalization(name="bn")(a))
    joined = layers.Concatenate()([layers.Conv2D(2, 1, name="b")(gated), layers.Conv2D(2, 1, name="c")(a)])
    model = keras.Model(x, layers.Dense(1, name="head")(layers.Flatten()(joined)))
    stripped = strip(model)
    assert stripped.get_layer("a").filters == 4
    xs = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(stripped(xs), model(xs), atol=1e-5)


@pytest.mark.parametrize("fill_value, removed", [(0.0, True), (0.5, False)])
def test_a_zeroed_channel_padded_with_a_constant_is_kept(fill_value, removed, rng):
    # Resizing that pads to the aspect ratio writes fill_value into every channel, a zeroed one too.
    x = keras.Input((8, 8, 3))
    h = ChannelMask([1, 0, 1, 1], name="mask")(layers.Conv2D(4, 1, name="a")(x))
    h = layers.Resizing(8, 12, pad_to_aspect_ratio=True, fill_value=fill_value, name="pad")(h)
    model = keras.Model(x, layers.Dense(2, name="head")(layers.Flatten()(layers.Conv2D(3, 1, name="b")(h))))
    stripped = strip(model)
    assert stripped.get_layer("a").filters == (3 if removed else 4)
    xs = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(stripped(xs), model(xs), atol=1e-5)


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
def test_a_stripped_zoo_model_names_only_keras_objects(name, tmp_path):
    # Its .keras file must load where keras_prune is not imported: no zoo initializer in its config.
    model = get_model(name, (32, 32, 3), 10, width=0.25, seed=0)
    path = tmp_path / "model.keras"
    strip(model).save(path)
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    assert "FanOutNormal" in json.dumps(model.get_config()) and "keras_prune" not in config


@pytest.mark.parametrize("depthwise, shape", [(False, (3, 3, 8, 16)), (True, (3, 3, 8, 2)), (False, (5, 4, 6)),
                                              (False, (12, 10))])
def test_the_plain_initializer_draws_what_the_zoo_initializer_draws(depthwise, shape):
    zoo = FanOutNormal(depthwise=depthwise, seed=7)
    plain = zoo.plain(shape)
    np.testing.assert_array_equal(plain(shape), zoo(shape))
    other = (*shape[:-2], 2 * shape[-2], shape[-1])  # redrawn at another width, as scratch does
    np.testing.assert_array_equal(plain(other), zoo(other))


def test_a_gate_after_a_batch_norm_without_beta_folds_into_gamma(rng):
    x = keras.Input((8, 8, 3))
    h = layers.BatchNormalization(center=False, name="bn")(layers.Conv2D(4, 1, name="a")(x))
    gate = ChannelGate(name="gate")
    model = keras.Model(x, layers.Dense(1, name="head")(layers.Flatten()(layers.ReLU()(gate(h)))))
    gate.gate.assign([0.0, 0.5, 1.0, 0.25])
    stripped = strip(model)
    assert _no_keras_prune_layers(stripped) and stripped.get_layer("a").filters == 3
    xs = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(stripped(xs), model(xs), atol=1e-5)


def test_a_mask_that_zeroes_one_side_of_a_joined_concatenation_is_refused_by_name():
    """Removing b's part would leave b no filters, and keeping one would need the mask (after the Add)."""
    x = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 1, name="a")(x)
    b = layers.Conv2D(4, 1, name="b")(x)
    c = layers.Conv2D(8, 1, name="c")(x)
    joined = layers.Add()([layers.Concatenate()([a, b]), c])
    masked = ChannelMask([1, 1, 1, 1, 0, 0, 0, 0], name="mask")(joined)
    model = keras.Model(x, layers.Dense(2, name="head")(layers.Flatten()(masked)))
    with pytest.raises(ValueError, match="leaves layer 'b' no channel"):
        strip(model)


def test_strip_refuses_what_it_cannot_fold():
    x = keras.Input((8, 8, 3))
    h = layers.Conv2D(4, 1, activation="relu", name="a")(x)
    gate = ChannelGate(name="gate")
    out = layers.Dense(1)(layers.Flatten()(gate(h)))
    model = keras.Model(x, out)
    gate.gate.assign([0.5, 1, 1, 1])
    with pytest.raises(ValueError, match="nothing to fold"):
        strip(model)
    unscaled = layers.BatchNormalization(scale=False, name="unscaled")
    gate = ChannelGate(name="gate2")
    out = layers.Dense(1)(layers.Flatten()(gate(unscaled(layers.Conv2D(4, 1)(x)))))
    gate.gate.assign([0.5, 1, 1, 1])
    with pytest.raises(ValueError, match="'unscaled', has no scale"):
        strip(keras.Model(x, out))
    runtime = ChannelGroupGate(2)
    count = keras.Input((), dtype="int32")
    model = keras.Model([x, count], runtime([layers.Conv2D(4, 1)(x), count]))
    with pytest.raises(ValueError, match="runtime gate"):
        strip(model)


def test_importing_keras_prune_never_imports_tfmot():
    import subprocess
    import sys

    code = (
        "import sys, keras_prune, keras_prune.graph, keras_prune.layers, keras_prune.export;"
        "print('tensorflow_model_optimization' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")
    assert keras_prune.__version__


def test_every_subpackage_the_package_names_is_an_attribute():
    import importlib
    import pkgutil

    named = set(keras_prune.__all__) - {"__version__"}
    for name in named:
        assert getattr(keras_prune, name) is importlib.import_module(f"keras_prune.{name}")
    public = {m.name for m in pkgutil.iter_modules(keras_prune.__path__) if not m.name.startswith("_")}
    assert public - named <= {"cli", "run_dir", "version"}, "a subpackage the README lists is missing"
