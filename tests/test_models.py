"""Tests of the model zoo: every model builds, runs and scales; arguments are checked."""

import numpy as np
import pytest

import keras

from keras_prune.models import MODEL_NAMES
from keras_prune.models import get_model

NUM_CLASSES = 10
# Models whose stem resizes small inputs, and the size it resizes up to.
RESIZE_MIN_SIZE = {"resnet50": 32, "mobilenet_v1": 32, "mobilenet_v2": 32, "alexnet": 67}
# Parameter counts of the Caffe LeNets on MNIST (weights + biases), as in OLMP's tables.
CAFFE_PARAMS = {"lenet300_100": 266_610, "lenet5": 431_080}


@pytest.fixture(autouse=True)
def clear_session():
    # tests/conftest.py also clears (with gc) around every test; this one makes the
    # file hermetic on its own, and skips the slow gc.collect() the conftest runs.
    keras.backend.clear_session(free_memory=False)


def _advance_keras_name_counters(model):
    """Creates an unnamed copy of every layer, so auto-generated names would now differ."""
    for layer in model.layers:
        config = layer.get_config()
        config.pop("name", None)
        type(layer).from_config(config)


def _weights_by_layer(model):
    return [
        (layer.name, [w.shape for w in layer.weights]) for layer in model.layers if layer.weights
    ]


def _assert_outputs_logits(model, name, input_shape):
    batch = np.random.default_rng(0).random((2, *input_shape), dtype="float32")
    logits = keras.ops.convert_to_numpy(model(batch, training=False))
    assert model.name == name
    assert logits.shape == (2, NUM_CLASSES)
    assert np.all(np.isfinite(logits))
    assert model.layers[-1].get_config().get("activation", "linear") == "linear"
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    if name in RESIZE_MIN_SIZE:
        size = RESIZE_MIN_SIZE[name]
        assert model.get_layer("resize").output.shape == (None, size, size, 1)
    if name in CAFFE_PARAMS and input_shape == (28, 28, 1):
        assert model.count_params() == CAFFE_PARAMS[name]


# One test per model checks the whole contract: building is most of this file's run
# time, and here every model is built four times rather than six.
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_runs_at_any_size_scales_with_width_and_is_seeded(name):
    mnist = get_model(name, (28, 28, 1), NUM_CLASSES, seed=0)
    _assert_outputs_logits(mnist, name, (28, 28, 1))
    digits = get_model(name, (8, 8, 1), NUM_CLASSES, seed=0)
    _assert_outputs_logits(digits, name, (8, 8, 1))

    _advance_keras_name_counters(digits)  # names must not come from Keras' counters
    twin = get_model(name, (8, 8, 1), NUM_CLASSES, seed=0)
    assert [layer.name for layer in twin.layers] == [layer.name for layer in digits.layers]
    for a, b in zip(twin.get_weights(), digits.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    wide = get_model(name, (8, 8, 1), NUM_CLASSES, width=1.25, seed=0)
    assert wide.count_params() > digits.count_params()
    assert wide.output_shape == digits.output_shape == (None, NUM_CLASSES)


def test_different_seeds_and_layers_get_different_weights():
    first = get_model("resnet20", (8, 8, 1), NUM_CLASSES, seed=3)
    second = get_model("resnet20", (8, 8, 1), NUM_CLASSES, seed=4)

    kernel = first.get_layer("conv2_block1_1_conv").kernel.numpy()
    assert not np.array_equal(kernel, second.get_layer("conv2_block1_1_conv").kernel.numpy())
    # Same shape, same seed, other layer: a shared integer seed would repeat the draw.
    assert not np.array_equal(kernel, first.get_layer("conv2_block2_1_conv").kernel.numpy())


def test_vgg16_uses_pruning_from_scratch_init():
    model = get_model("vgg16", (32, 32, 3), NUM_CLASSES, width=0.5, seed=0)

    np.testing.assert_array_equal(model.get_layer("block1_bn1").gamma.numpy(), 0.5)
    kernel = model.get_layer("block5_conv3").kernel.numpy()  # 3x3, 256 -> 256 at width 0.5
    np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / (9 * 256)), rtol=0.05)
    assert "block5_pool" not in [layer.name for layer in model.layers]
    np.testing.assert_allclose(model.get_layer("predictions").kernel.numpy().std(), 0.01, rtol=0.1)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="Received: name='resnet18'") as info:
        get_model("resnet18", (32, 32, 3), NUM_CLASSES)
    assert all(name in str(info.value) for name in MODEL_NAMES)


# (argument, a bad value); one test rather than a parametrisation because the
# conftest's per-test session clearing costs more than these checks.
BAD_ARGUMENTS = [
    ("width", 0.0),
    ("width", -1.25),
    ("width", float("nan")),
    ("width", "wide"),
    ("num_classes", 0),
    ("num_classes", 2.5),
    ("input_shape", (28, 28)),
    ("input_shape", (0, 28, 1)),
    ("input_shape", (28, 28, None)),
    ("input_shape", "28x28"),
    ("seed", 1.5),
    ("weights", "imagenet"),
]


def test_invalid_argument_raises_naming_it():
    for argument, value in BAD_ARGUMENTS:
        arguments = {"name": "lenet5", "input_shape": (28, 28, 1), "num_classes": NUM_CLASSES}
        arguments[argument] = value
        with pytest.raises(ValueError, match=f"Expected `{argument}`.*Received: {argument}="):
            get_model(**arguments)


def test_weights_path_loads_saved_weights(tmp_path):
    path = str(tmp_path / "lenet300_100.weights.h5")
    trained = get_model("lenet300_100", (28, 28, 1), NUM_CLASSES, seed=1)
    trained.save_weights(path)

    loaded = get_model("lenet300_100", (28, 28, 1), NUM_CLASSES, weights=path, seed=2)

    for a, b in zip(trained.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "name, application, width",
    [("mobilenet_v1", "MobileNet", 0.25), ("mobilenet_v2", "MobileNetV2", 0.35)],
)
def test_mobilenet_loads_application_weights_and_rejects_them_on_grayscale(
    name, application, width, tmp_path
):
    path = str(tmp_path / f"{name}.weights.h5")
    reference = getattr(keras.applications, application)(
        input_shape=(32, 32, 3), alpha=width, weights=None, classes=NUM_CLASSES
    )
    reference.save_weights(path)

    # The stem resizes 20x20 to 32x32, which leaves the weights unchanged.
    ours = get_model(name, (20, 20, 3), NUM_CLASSES, width=width, weights=path)
    for a, b in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="1-channel inputs.*expect 3 channels"):
        get_model(name, (20, 20, 1), NUM_CLASSES, width=width, weights=path)


def test_resnet50_mirrors_keras_applications(tmp_path):
    ours = get_model("resnet50", (224, 224, 3), 1000, seed=0)
    reference = keras.applications.ResNet50(weights=None)

    assert ours.count_params() == reference.count_params()
    assert _weights_by_layer(ours) == _weights_by_layer(reference)
    assert [w.shape for w in ours.weights] == [w.shape for w in reference.weights]
    # A weights file of the application loads into ours, weight for weight.
    path = str(tmp_path / "resnet50.weights.h5")
    reference.save_weights(path)
    ours.load_weights(path)
    for a, b in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape, depthwise", [((3, 3, 16, 32), False), ((3, 3, 24, 2), True), ((1, 1, 8, 8), False)])
def test_fan_out_normal_draws_what_a_fixed_stddev_drew_at_the_original_width(shape, depthwise):
    from keras_prune.models._common import FanOutNormal

    fan_out = shape[0] * shape[1] * shape[3] * (shape[2] if depthwise else 1)
    fixed = keras.initializers.RandomNormal(stddev=np.sqrt(2.0 / fan_out), seed=7)
    np.testing.assert_array_equal(FanOutNormal(depthwise=depthwise, seed=7)(shape), fixed(shape))


@pytest.mark.parametrize("name", ["resnet20", "vgg16", "mobilenet_v2"])
def test_widened_and_narrowed_layers_draw_with_their_own_fan_out(name, tmp_path):
    """Pruning from Scratch draws N(0, sqrt(2 / (k^2 * C_out))) with C_out the width being built."""
    from keras_prune.graph import analyze, expand_channels, prune_channels, reinitialize

    model = get_model(name, (32, 32, 3), 10, seed=0)
    graph = analyze(model)
    wide = expand_channels(model, 1.5, graph=graph)
    narrow = reinitialize(prune_channels(model, {g.id: np.arange(max(1, g.size // 4)) for g in graph.prunable_groups},
                                         graph=graph))
    checked = 0
    for variant in (wide, narrow):
        for layer in variant.layers:
            if type(layer) is not keras.layers.Conv2D or layer.kernel.shape[-1] == model.get_layer(layer.name).filters:
                continue
            kernel = layer.kernel.numpy()
            expected = np.sqrt(2.0 / (np.prod(kernel.shape[:2]) * kernel.shape[-1]))
            if kernel.size >= 2000:
                assert kernel.std() == pytest.approx(expected, rel=0.1), layer.name
                checked += 1
    assert checked >= 3
    wide.save(tmp_path / "wide.keras")
    keras.models.load_model(tmp_path / "wide.keras")
