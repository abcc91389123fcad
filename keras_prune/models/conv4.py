"""The small 4-conv CIFAR network of Runtime Neural Pruning's CIFAR experiments.

Four 3x3 'same' convs (32, 64, 128, 256 channels), each followed by BatchNorm, ReLU
and a 2x2 max-pool, then global average pooling and a Dense classifier. The layer
widths are not in the retrieved paper text (docs/PAPERS.md 3.3), so they double per block from
32, small enough for CPU runs; `width` scales them.
"""

import keras
from keras import layers

from keras_prune.models import _common

CONV4_CHANNELS = (32, 64, 128, 256)


def conv4(input_shape, num_classes, *, width, seed):
    """conv(32)-conv(64)-conv(128)-conv(256), each BN-ReLU-maxpool, -> GAP -> Dense.

    Args:
        input_shape: `(height, width, channels)`.
        num_classes: Output size.
        width: Multiplies every conv's channel count.
        seed: Integer seed for the initializers, or `None`.

    Returns:
        A functional `keras.Model` named "conv4".
    """
    inputs, x = _common.input_stem(input_shape)
    for index, filters in enumerate(CONV4_CHANNELS, start=1):
        name = f"conv{index}"
        filters = _common.scale(filters, width)
        x = layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=False,
            kernel_initializer=_common.he_normal_fan_in(seed, name),
            name=name,
        )(x)
        x = layers.BatchNormalization(name=f"bn{index}")(x)
        x = layers.Activation("relu", name=f"relu{index}")(x)
        x = layers.MaxPooling2D(2, padding="same", name=f"pool{index}")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(
        num_classes, kernel_initializer=_common.he_normal_fan_in(seed, "predictions"), name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name="conv4")
