"""The AlexNet-style network OLMP prunes on Caltech-256 (CaffeNet layout).

conv1 96 11x11/4 valid -> pool -> conv2 256 5x5 -> pool -> conv3 384, conv4 384,
conv5 256 3x3 -> pool -> fc6 4096 -> dropout -> fc7 4096 -> dropout -> fc8 logits,
ReLU after every conv and hidden fc, pools 3x3/2 valid, dropout 0.5. Layer names are
Caffe's (`conv1` ... `fc8`).

Differences from CaffeNet, on purpose:
- No local response normalisation: Keras has no LRN layer, and the dependency-graph
  engine must understand every layer.
- conv2, conv4 and conv5 are dense, not split into two groups (a two-GPU artefact of
  the original, also dropped by torchvision's AlexNet).
- Initialisation: He normal fan-in kernels and zero biases, with the classifier
  N(0, 0.01), instead of CaffeNet's N(0, 0.01)/N(0, 0.005) kernels and constant-1
  biases, which were tuned together with LRN and train poorly from scratch without it.

The model stem resizes inputs smaller than 67x67, the least size for which the three
valid pools still produce a 1x1 map (67 -> 15 -> 7 -> 3 -> 1); 227x227 gives CaffeNet's
6x6 map before fc6.
"""

import keras
from keras import layers

from keras_prune.models import _common

MIN_SIZE = 67
# (name, filters, kernel size, stride, padding, max-pool after)
CONVS = (
    ("conv1", 96, 11, 4, "valid", "pool1"),
    ("conv2", 256, 5, 1, "same", "pool2"),
    ("conv3", 384, 3, 1, "same", None),
    ("conv4", 384, 3, 1, "same", None),
    ("conv5", 256, 3, 1, "same", "pool5"),
)


def alexnet(input_shape, num_classes, *, width, seed):
    """Builds the AlexNet-Caltech network with logits output.

    Args:
        input_shape: `(height, width, channels)`; sides under 67 are resized up.
        num_classes: Output size.
        width: Multiplies every conv channel count and fc6/fc7 unit count.
        seed: Integer seed for the initializers, or `None`.

    Returns:
        A functional `keras.Model` named "alexnet".
    """
    inputs, x = _common.input_stem(input_shape, MIN_SIZE)
    for name, filters, kernel_size, stride, padding, pool in CONVS:
        x = layers.Conv2D(
            _common.scale(filters, width),
            kernel_size,
            strides=stride,
            padding=padding,
            kernel_initializer=_common.he_normal_fan_in(seed, name),
            name=name,
        )(x)
        x = layers.Activation("relu", name=name.replace("conv", "relu"))(x)
        if pool is not None:
            x = layers.MaxPooling2D(3, strides=2, name=pool)(x)
    x = layers.Flatten(name="flatten")(x)
    for index in (6, 7):
        name = f"fc{index}"
        x = layers.Dense(
            _common.scale(4096, width),
            kernel_initializer=_common.he_normal_fan_in(seed, name),
            name=name,
        )(x)
        x = layers.Activation("relu", name=f"relu{index}")(x)
        x = layers.Dropout(
            0.5, seed=_common.layer_seed(seed, f"drop{index}"), name=f"drop{index}"
        )(x)
    outputs = layers.Dense(
        num_classes,
        kernel_initializer=_common.normal(0.01, seed, "fc8"),
        name="fc8",
    )(x)
    return keras.Model(inputs, outputs, name="alexnet")
