"""MobileNet v1 and v2: the `keras.applications` networks with a logits head.

The body is `keras.applications.MobileNet` / `MobileNetV2` built with
`include_top=False, weights=None, alpha=width` on our input; the head is rebuilt here
with the application's layer types and weight shapes (v1: GAP -> Dropout(1e-3) ->
1x1 `conv_preds` -> Reshape; v2: GAP -> Dense `predictions`), without the softmax
and with fixed layer names, so ImageNet weight files of the applications load by
path. `width` is the application's `alpha`, so channel counts follow its rounding
(v1 `int(c * alpha)`, v2 multiples of 8), not `round(c * width)`.

The application draws unseeded Glorot kernels; they are replaced by the Pruning from
Scratch initialisation (`models/mobilenet.py` there), seeded per layer: conv and
depthwise kernels He normal fan-out, BatchNorm gamma 1 and beta 0, the classifier
N(0, 0.01) with zero bias.

The model stem resizes inputs smaller than 32x32 (the minimum of the applications).
"""

import keras
from keras import layers

from keras_prune.models import _common

MIN_SIZE = 32


def mobilenet_v1(input_shape, num_classes, *, width, seed):
    """Builds MobileNet v1 with logits output.

    Args:
        input_shape: `(height, width, channels)`; sides under 32 are resized up.
        num_classes: Output size.
        width: The application's `alpha`.
        seed: Integer seed for the initializers, or `None`.

    Returns:
        A functional `keras.Model` named "mobilenet_v1".
    """
    inputs, x = _common.input_stem(input_shape, MIN_SIZE)
    body = keras.applications.MobileNet(
        input_shape=tuple(x.shape[1:]),
        input_tensor=x,
        alpha=width,
        include_top=False,
        weights=None,
        name="mobilenet_v1_body",
    )
    _reinitialize(body, seed)
    x = layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(body.output)
    x = layers.Dropout(1e-3, name="dropout")(x)
    x = layers.Conv2D(
        num_classes,
        1,
        padding="same",
        kernel_initializer=_common.normal(0.01, seed, "conv_preds"),
        name="conv_preds",
    )(x)
    outputs = layers.Reshape((num_classes,), name="predictions")(x)
    return keras.Model(inputs, outputs, name="mobilenet_v1")


def mobilenet_v2(input_shape, num_classes, *, width, seed):
    """Builds MobileNet v2 with logits output.

    Args:
        input_shape: `(height, width, channels)`; sides under 32 are resized up.
        num_classes: Output size.
        width: The application's `alpha`.
        seed: Integer seed for the initializers, or `None`.

    Returns:
        A functional `keras.Model` named "mobilenet_v2".
    """
    inputs, x = _common.input_stem(input_shape, MIN_SIZE)
    body = keras.applications.MobileNetV2(
        input_shape=tuple(x.shape[1:]),
        input_tensor=x,
        alpha=width,
        include_top=False,
        weights=None,
        name="mobilenet_v2_body",
    )
    _reinitialize(body, seed)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(body.output)
    outputs = layers.Dense(
        num_classes,
        kernel_initializer=_common.normal(0.01, seed, "predictions"),
        name="predictions",
    )(x)
    return keras.Model(inputs, outputs, name="mobilenet_v2")


def _reinitialize(model, seed):
    """Redraws every conv kernel He normal fan-out and records the initializer.

    BatchNorm already starts at gamma 1, beta 0, and the applications' convs have no
    bias, so kernels are all that change. The layer's initializer attribute is set
    too, so `get_config` and a clone describe the weights the layer really has.
    """
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            kernel, attribute, depthwise = layer.kernel, "depthwise_initializer", True
        elif isinstance(layer, layers.Conv2D):
            kernel, attribute, depthwise = layer.kernel, "kernel_initializer", False
        else:
            continue
        initializer = _common.conv_normal(seed, layer.name, depthwise=depthwise)
        setattr(layer, attribute, initializer)
        kernel.assign(initializer(kernel.shape, dtype=kernel.dtype))
