"""The CIFAR VGG-16 with batch norm of Pruning from Scratch (`models/vgg.py` there).

Every conv is 3x3 'same' without bias, then BatchNorm, then ReLU, so a channel gate
can sit between the BatchNorm and the ReLU. Initialisation is the official code's,
because the gates are learned on these exact random weights: conv kernels
N(0, sqrt(2 / (3 * 3 * C_out))), BatchNorm gamma 0.5 and beta 0, the classifier
N(0, 0.01) with zero bias. BatchNorm uses PyTorch's momentum and epsilon.
"""

import keras
from keras import layers

from keras_prune.models import _common

# Channel counts per stage; every stage but the last ends with a 2x2 max-pool.
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg16(input_shape, num_classes, *, width, seed):
    """CIFAR VGG-16 (BN): cfg [64,64,M,128,128,M,256x3,M,512x3,M,512x3] -> GAP -> Dense.

    The official head is AvgPool(2) on the 2x2 map of a 32x32 input;
    GlobalAveragePooling2D equals it there and works at any input size. Max-pools use
    'same' padding so that 8x8 and 28x28 inputs build.

    Args:
        input_shape: `(height, width, channels)`.
        num_classes: Output size.
        width: Multiplies every conv's channel count.
        seed: Integer seed for the initializers, or `None`.

    Returns:
        A functional `keras.Model` named "vgg16".
    """
    inputs, x = _common.input_stem(input_shape)
    for stage, channels in enumerate(VGG16_STAGES, start=1):
        for index, filters in enumerate(channels, start=1):
            name = f"block{stage}_conv{index}"
            filters = _common.scale(filters, width)
            x = layers.Conv2D(
                filters,
                3,
                padding="same",
                use_bias=False,
                kernel_initializer=_common.conv_normal(seed, name),
                name=name,
            )(x)
            x = layers.BatchNormalization(
                gamma_initializer=keras.initializers.Constant(0.5),
                name=f"block{stage}_bn{index}",
                **_common.TORCH_BN,
            )(x)
            x = layers.Activation("relu", name=f"block{stage}_relu{index}")(x)
        if stage < len(VGG16_STAGES):
            x = layers.MaxPooling2D(2, padding="same", name=f"block{stage}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(
        num_classes,
        kernel_initializer=_common.normal(0.01, seed, "predictions"),
        name="predictions",
    )(x)
    return keras.Model(inputs, outputs, name="vgg16")
