"""The Caffe LeNets used by Dynamic Network Surgery and OLMP.

Both follow Caffe's `examples/mnist` prototxts: "xavier" weight filler (U(+-sqrt(3 /
fan_in)), Keras' LeCun uniform) and zero biases. Layer names are Caffe's (`ip1`, ...),
so per-layer results read like the papers' tables.
"""

import keras
from keras import layers

from keras_prune.models import _common

# LeNet-5's valid 5x5 convolutions need at least 13x13 inputs (13 -> 9 -> 5 -> 1).
LENET5_MIN_VALID_SIZE = 13


def lenet300_100(input_shape, num_classes, *, width, seed):
    """LeNet-300-100: Flatten -> Dense 300 -> ReLU -> Dense 100 -> ReLU -> Dense logits.

    Args:
        input_shape: Any shape; it is flattened.
        num_classes: Output size.
        width: Multiplies the hidden unit counts.
        seed: Integer seed for the initializers, or `None`.

    Returns:
        A functional `keras.Model` named "lenet300_100".
    """
    inputs, x = _common.input_stem(input_shape)
    x = layers.Flatten(name="flatten")(x)
    for index, units in enumerate((300, 100), start=1):
        x = _dense(x, _common.scale(units, width), f"ip{index}", seed)
        x = layers.Activation("relu", name=f"relu{index}")(x)
    outputs = _dense(x, num_classes, "ip3", seed)
    return keras.Model(inputs, outputs, name="lenet300_100")


def lenet5(input_shape, num_classes, *, width, seed):
    """Caffe LeNet-5: conv 20 -> pool -> conv 50 -> pool -> Dense 500 -> ReLU -> logits.

    The convolutions are 5x5 with no activation and the pools 2x2/2, as in Caffe.
    Pools use 'same' padding, which is Caffe's ceil-mode pooling for stride = kernel.
    Inputs smaller than 13x13 (e.g. the 8x8 sklearn digits) cannot pass two valid
    5x5 convolutions, so for them both convolutions use 'same' padding instead.

    Args:
        input_shape: `(height, width, channels)`.
        num_classes: Output size.
        width: Multiplies the channel and hidden unit counts.
        seed: Integer seed for the initializers, or `None`.

    Returns:
        A functional `keras.Model` named "lenet5".
    """
    inputs, x = _common.input_stem(input_shape)
    small = min(input_shape[0], input_shape[1]) < LENET5_MIN_VALID_SIZE
    padding = "same" if small else "valid"
    for index, filters in enumerate((20, 50), start=1):
        name = f"conv{index}"
        x = layers.Conv2D(
            _common.scale(filters, width),
            5,
            padding=padding,
            kernel_initializer=_common.caffe_xavier(seed, name),
            name=name,
        )(x)
        x = layers.MaxPooling2D(2, padding="same", name=f"pool{index}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = _dense(x, _common.scale(500, width), "ip1", seed)
    x = layers.Activation("relu", name="relu1")(x)
    outputs = _dense(x, num_classes, "ip2", seed)
    return keras.Model(inputs, outputs, name="lenet5")


def _dense(x, units, name, seed):
    return layers.Dense(
        units, kernel_initializer=_common.caffe_xavier(seed, name), name=name
    )(x)
