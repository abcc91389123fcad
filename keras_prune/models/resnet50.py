"""ImageNet ResNet-50 v1, a mirror of `keras.applications.ResNet50` that can change width.

Same layers, names, weight shapes and weight order as `keras.applications.ResNet50`
(7x7/2 stem with `ZeroPadding2D`, 3x3/2 max-pool, bottleneck stages [3, 4, 6, 3], the
stride on the first 1x1 conv of a stage, convs with bias, BatchNorm epsilon 1.001e-5,
1x1 conv + BatchNorm shortcut in each stage's first block), so an ImageNet weights
file written for it loads by path. Unlike the application, `width` scales every
channel count, which Pruning from Scratch's 1.25x expansion needs.

Initialisation: conv kernels He normal fan-out (Pruning from Scratch, after
torchvision), biases 0, BatchNorm gamma 1 and beta 0, the classifier PyTorch's
default `nn.Linear` init.

The model stem resizes inputs smaller than 32x32 (the minimum of the application).
"""

import keras
from keras import layers

from keras_prune.models import _common

MIN_SIZE = 32
# (stage name, bottleneck channels, blocks, stride of the first block)
STAGES = (("conv2", 64, 3, 1), ("conv3", 128, 4, 2), ("conv4", 256, 6, 2), ("conv5", 512, 3, 2))
_BN = {"axis": 3, "epsilon": 1.001e-5}


def resnet50(input_shape, num_classes, *, width, seed):
    """Builds ResNet-50 v1 with logits output.

    Args:
        input_shape: `(height, width, channels)`; sides under 32 are resized up.
        num_classes: Output size.
        width: Multiplies every channel count (stem, bottleneck and block outputs).
        seed: Integer seed for the initializers, or `None`.

    Returns:
        A functional `keras.Model` named "resnet50".
    """
    inputs, x = _common.input_stem(input_shape, MIN_SIZE)
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(x)
    x = _conv(x, _common.scale(64, width), 7, "conv1_conv", seed, strides=2)
    x = layers.BatchNormalization(name="conv1_bn", **_BN)(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, filters, blocks, stride in STAGES:
        filters, out_filters = _common.scale(filters, width), _common.scale(4 * filters, width)
        x = _bottleneck(x, filters, out_filters, stride, True, f"{stage}_block1", seed)
        for block in range(2, blocks + 1):
            x = _bottleneck(x, filters, out_filters, 1, False, f"{stage}_block{block}", seed)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    kernel_init, bias_init = _common.torch_linear(seed, "predictions", x.shape[-1])
    outputs = layers.Dense(
        num_classes,
        kernel_initializer=kernel_init,
        bias_initializer=bias_init,
        name="predictions",
    )(x)
    return keras.Model(inputs, outputs, name="resnet50")


def _bottleneck(x, filters, out_filters, stride, conv_shortcut, name, seed):
    # The call order matches keras.applications (shortcut first), which fixes the
    # order of model.layers and so the order weights are saved and loaded in.
    if conv_shortcut:
        shortcut = _conv(x, out_filters, 1, f"{name}_0_conv", seed, strides=stride)
        shortcut = layers.BatchNormalization(name=f"{name}_0_bn", **_BN)(shortcut)
    else:
        shortcut = x
    x = _conv(x, filters, 1, f"{name}_1_conv", seed, strides=stride)
    x = layers.BatchNormalization(name=f"{name}_1_bn", **_BN)(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = _conv(x, filters, 3, f"{name}_2_conv", seed, padding="same")
    x = layers.BatchNormalization(name=f"{name}_2_bn", **_BN)(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = _conv(x, out_filters, 1, f"{name}_3_conv", seed)
    x = layers.BatchNormalization(name=f"{name}_3_bn", **_BN)(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def _conv(x, filters, kernel_size, name, seed, strides=1, padding="valid"):
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        kernel_initializer=_common.conv_normal(seed, name),
        name=name,
    )(x)
