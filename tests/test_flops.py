"""FLOPs and parameter counts against published figures, and their pruned forms."""

import keras
import numpy as np
import pytest
from keras import layers

from keras_prune.graph import analyze, count_flops, count_params, expand_channels, expanded_widths, prune_channels
from keras_prune.layers import MaskedDense
from keras_prune.models import get_model


def _resnet50_v1_5():
    """ResNet-50 v1.5 (stride in the 3x3 conv, torchvision's layout), only to check the counter."""
    x = keras.Input((224, 224, 3))
    h = layers.Conv2D(64, 7, strides=2, padding="same")(x)
    h = layers.MaxPooling2D(3, strides=2, padding="same")(h)
    for stage, (blocks, width) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)]):
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 0 else 1
            y = layers.Conv2D(width, 1)(h)
            y = layers.Conv2D(width, 3, strides=stride, padding="same")(y)
            y = layers.Conv2D(4 * width, 1)(y)
            if block == 0:
                h = layers.Conv2D(4 * width, 1, strides=stride)(h)
            h = layers.Add()([h, y])
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, layers.Dense(1000)(h))


PUBLISHED = {
    # name: (builder, published MACs, source)
    "resnet50_v1": (
        lambda: keras.applications.ResNet50(weights=None),
        3.8e9,
        "He et al. 2016, Table 1 (Keras's ResNet50 is v1)",
    ),
    "resnet50_v1.5": (_resnet50_v1_5, 4.1e9, "the usual 4.1 G (torchvision layout)"),
    "mobilenet_v2": (lambda: keras.applications.MobileNetV2(weights=None), 300e6, "Sandler et al."),
    "vgg16_imagenet": (lambda: keras.applications.VGG16(weights=None), 15.5e9, "Simonyan & Zisserman"),
    "resnet56_cifar": (lambda: get_model("resnet56", (32, 32, 3), 10), 125e6, "He et al. / PfS"),
    "vgg16_cifar": (lambda: get_model("vgg16", (32, 32, 3), 10), 313.2e6, "PfS's counter"),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_flops_agree_with_published_figures(name):
    build, published, _source = PUBLISHED[name]
    model = build()
    macs = count_flops(model).total
    assert abs(macs / published - 1) < 0.02, f"{name}: {macs / 1e6:.1f} M vs {published / 1e6:.1f} M"


def test_flops_formulas_per_layer_type():
    x = keras.Input((10, 10, 4))
    c = layers.Conv2D(8, 3, padding="same", name="conv")(x)
    d = layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(c)
    s = layers.SeparableConv2D(5, 3, padding="same", name="sep")(d)
    t = layers.Conv2DTranspose(3, 2, strides=2, name="up")(s)
    g = layers.Conv2D(6, 1, groups=3, name="grouped")(t)
    out = layers.Dense(7, name="fc")(layers.GlobalAveragePooling2D()(g))
    by_layer = count_flops(keras.Model(x, out)).by_layer
    assert by_layer == {
        "conv": 10 * 10 * 9 * 4 * 8,
        "dw": 8 * 8 * 9 * 16,
        "sep": 8 * 8 * (9 * 16 + 16 * 5),
        "up": 8 * 8 * 4 * 5 * 3,
        "grouped": 16 * 16 * 1 * 6,
        "fc": 6 * 7,
    }


def test_params_match_keras_and_exclude_masks():
    model = get_model("lenet300_100", (28, 28, 1), 10)
    assert count_params(model).total == model.count_params() == 266_610
    x = keras.Input((4,))
    dense = MaskedDense(3, name="masked")
    out = dense(x)
    masked = keras.Model(x, out)
    mask = np.ones((4, 3), "float32")
    mask[0] = 0
    dense.prune_mask.assign(mask)
    counts = count_params(masked)
    assert counts.total == 4 * 3 + 3
    assert counts.nonzero == np.count_nonzero(dense.kernel.numpy() * mask) + np.count_nonzero(dense.bias.numpy())


def test_dynamic_shapes_are_refused_with_advice():
    x = keras.Input((None, None, 3))
    out = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3)(x))
    with pytest.raises(ValueError, match="static shapes"):
        count_flops(keras.Model(x, out))


def test_flops_of_keep_needs_no_surgery():
    model = get_model("resnet20", (32, 32, 3), 10)
    graph = analyze(model)
    full = count_flops(model, graph=graph).total
    half = {g.id: np.arange(g.size // 2) for g in graph.prunable_groups}
    assert count_flops(model, half, graph=graph).total < 0.3 * full


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2", "vgg16"])
def test_flops_of_widths_match_the_built_wider_and_narrower_models(name):
    model = get_model(name, (32, 32, 3), 10)
    graph = analyze(model)
    wider = expanded_widths(graph, 1.25, round_to=8)
    assert any(w > graph.group(g).size for g, w in wider.items())
    assert count_flops(model, graph=graph, widths=wider).total == count_flops(
        expand_channels(model, 1.25, graph=graph, round_to=8)
    ).total
    narrower = {g.id: max(1, g.size // 3) for g in graph.prunable_groups}
    keep = {g: np.arange(n) for g, n in narrower.items()}
    assert count_flops(model, graph=graph, widths=narrower).total == count_flops(
        prune_channels(model, keep, graph=graph)
    ).total


def test_widths_refuse_a_frozen_group_a_width_out_of_range_and_keep_beside_them():
    model = get_model("resnet20", (32, 32, 3), 10)
    graph = analyze(model)
    group = graph.prunable_groups[0]
    frozen = next(g for g in graph.groups if not g.prunable)
    with pytest.raises(ValueError, match="frozen"):
        count_flops(model, graph=graph, widths={frozen.id: frozen.size + 1})
    with pytest.raises(ValueError, match=f"between 1 and {2 * group.size}"):
        count_flops(model, graph=graph, widths={group.id: 2 * group.size + 1})
    with pytest.raises(ValueError, match=f"between 1 and {2 * group.size}"):
        count_flops(model, graph=graph, widths={group.id: 0})
    with pytest.raises(ValueError, match="not both"):
        count_flops(model, {group.id: [0]}, graph=graph, widths={group.id: 1})


@pytest.mark.parametrize("make, channels_last", [
    (lambda fmt: layers.Conv2DTranspose(8, 3, data_format=fmt), lambda: 32 * 32 * 9 * 16 * 8),
    (lambda fmt: layers.SeparableConv2D(8, 3, padding="same", data_format=fmt), lambda: 32 * 32 * (9 * 16 + 16 * 8)),
    (lambda fmt: layers.DepthwiseConv2D(3, padding="same", data_format=fmt), lambda: 32 * 32 * 9 * 16),
    (lambda fmt: layers.Conv2D(8, 3, padding="same", data_format=fmt), lambda: 32 * 32 * 9 * 16 * 8),
])
def test_convolutions_count_the_same_in_either_data_format(make, channels_last):
    def macs(fmt, shape):
        x = keras.Input(shape)
        return count_flops(keras.Model(x, make(fmt)(x))).total

    assert macs("channels_last", (32, 32, 16)) == channels_last()
    assert macs("channels_first", (16, 32, 32)) == channels_last()


def _dynamic_base():
    base_in = keras.Input((None, None, 3))
    h = layers.Conv2D(8, 3, padding="same", name="c1")(base_in)
    return keras.Model(base_in, layers.Conv2D(8, 3, strides=2, padding="same", name="c2")(h), name="base")


def test_a_nested_model_built_on_a_dynamic_input_counts_at_the_size_it_is_called_with(rng):
    """E.g. `MobileNetV2(include_top=False)` built without an input shape, then called on a fixed one."""
    base = _dynamic_base()
    x = keras.Input((16, 16, 3))
    model = keras.Model(x, layers.Dense(2, name="head")(layers.Flatten()(base(x))))
    flat = keras.Model(x, model.get_layer("head")(layers.Flatten()(base.get_layer("c2")(base.get_layer("c1")(x)))))
    assert count_flops(model).total == count_flops(flat).total > 0
    graph = analyze(model)
    assert "base/c1" in {g.id for g in graph.prunable_groups}, "the Flatten after the nested model knows its size"
    pruned = prune_channels(model, {"base/c1": [0, 2, 5], "base/c2": [1, 3]}, graph=graph)
    inputs = rng.normal(size=(2, 16, 16, 3)).astype("float32")
    assert pruned(inputs).shape == (2, 2)
    assert count_flops(pruned).total < count_flops(model).total


def test_a_nested_model_built_on_fixed_sizes_keeps_them_when_called_on_a_dynamic_input():
    """Only sizes that were unknown are worked out again; known ones are not made unknown."""
    from keras_prune.graph.trace import trace_model

    base_in = keras.Input((16, 16, 3))
    base = keras.Model(base_in, layers.Conv2D(8, 3, name="c1")(base_in), name="base")
    x = keras.Input((None, None, 3))
    model = keras.Model(x, layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(base(x))))
    trace = trace_model(model)
    conv = next(call for call in trace.calls if call.path == "base/c1")
    assert trace.shapes[conv.outputs[0]] == (None, 14, 14, 8)
