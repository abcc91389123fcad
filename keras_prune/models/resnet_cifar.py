"""CIFAR ResNets (He et al. 2016, section 4.2) as in Pruning from Scratch's `models/resnet.py`.

Depth 6n + 2: a 3x3 stem of 16 channels, three stages of n basic blocks at 16, 32 and
64 channels, stride 2 at the first block of stages 2 and 3, global average pooling and
one Dense. A block whose input and output shapes differ gets a 1x1 conv + BatchNorm
projection shortcut (option B). Convs have no bias; each is followed by BatchNorm and,
except before the add, by ReLU.

Layer names follow `keras.applications` ResNets: the stem is `conv1_*` and stage s
(s = 2, 3, 4) block b is `conv{s}_block{b}_{1,2}_{conv,bn,relu}`, shortcut
`conv{s}_block{b}_0_{conv,bn}`, then `_add` and `_out`.

Initialisation as in the official code: conv kernels He normal fan-out, BatchNorm
gamma 1 and beta 0 (PyTorch momentum and epsilon), the classifier PyTorch's default
`nn.Linear` init.
"""

import keras
from keras import layers

from keras_prune.models import _common

STAGE_CHANNELS = (16, 32, 64)


def resnet20(input_shape, num_classes, *, width, seed):
    """CIFAR ResNet-20 (n = 3); arguments as in `cifar_resnet`."""
    return cifar_resnet(20, input_shape, num_classes, width=width, seed=seed)


def resnet32(input_shape, num_classes, *, width, seed):
    """CIFAR ResNet-32 (n = 5); arguments as in `cifar_resnet`."""
    return cifar_resnet(32, input_shape, num_classes, width=width, seed=seed)


def resnet56(input_shape, num_classes, *, width, seed):
    """CIFAR ResNet-56 (n = 9); arguments as in `cifar_resnet`."""
    return cifar_resnet(56, input_shape, num_classes, width=width, seed=seed)


def resnet110(input_shape, num_classes, *, width, seed):
    """CIFAR ResNet-110 (n = 18); arguments as in `cifar_resnet`."""
    return cifar_resnet(110, input_shape, num_classes, width=width, seed=seed)


def cifar_resnet(depth, input_shape, num_classes, *, width, seed):
    """Builds a CIFAR ResNet of depth 6n + 2.

    Args:
        depth: 6n + 2 for a positive integer n.
        input_shape: `(height, width, channels)`.
        num_classes: Output size.
        width: Multiplies every channel count (stem, blocks and residual stream).
        seed: Integer seed for the initializers, or `None`.

    Returns:
        A functional `keras.Model` named `f"resnet{depth}"`.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"Expected depth = 6n + 2 with n >= 1 (20, 32, 56, 110, ...). Received: depth={depth}"
        )
    blocks = (depth - 2) // 6
    inputs, x = _common.input_stem(input_shape)
    channels = _common.scale(STAGE_CHANNELS[0], width)
    x = _conv_bn(x, channels, 3, 1, "conv1", seed)
    x = layers.Activation("relu", name="conv1_relu")(x)
    for stage, stage_channels in enumerate(STAGE_CHANNELS, start=2):
        out_channels = _common.scale(stage_channels, width)
        for block in range(1, blocks + 1):
            stride = 2 if block == 1 and stage > 2 else 1
            x = _basic_block(
                x, channels, out_channels, stride, f"conv{stage}_block{block}", seed
            )
            channels = out_channels
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    kernel_init, bias_init = _common.torch_linear(seed, "predictions", channels)
    outputs = layers.Dense(
        num_classes,
        kernel_initializer=kernel_init,
        bias_initializer=bias_init,
        name="predictions",
    )(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}")


def _basic_block(x, in_channels, out_channels, stride, name, seed):
    if stride != 1 or in_channels != out_channels:
        shortcut = _conv_bn(x, out_channels, 1, stride, f"{name}_0", seed)
    else:
        shortcut = x
    x = _conv_bn(x, out_channels, 3, stride, f"{name}_1", seed)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = _conv_bn(x, out_channels, 3, 1, f"{name}_2", seed)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def _conv_bn(x, filters, kernel_size, stride, prefix, seed):
    name = f"{prefix}_conv"
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer=_common.conv_normal(seed, name),
        name=name,
    )(x)
    return layers.BatchNormalization(name=f"{prefix}_bn", **_common.TORCH_BN)(x)
