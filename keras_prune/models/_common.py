"""Pieces every builder of the zoo shares: channel scaling, seeded initializers, the input stem.

Builders receive arguments that `zoo.get_model` has already checked, so nothing here
validates user input.
"""

import math
import zlib

import keras
from keras import layers

# PyTorch's BatchNorm2d defaults (momentum 0.1 there is 0.9 here: Keras weights the old
# value). The Pruning-from-Scratch models were written in PyTorch, and their gates are
# learned on the random network, so the normalisation they saw is part of the method.
TORCH_BN = {"momentum": 0.9, "epsilon": 1e-5}


def scale(channels, width):
    """Scales a channel or unit count by `width`, keeping at least one."""
    return max(1, int(round(channels * width)))


def layer_seed(seed, name):
    """Derives the seed of one layer from the model seed and the layer's name.

    A Keras initializer seeded with an integer returns the same values on every call,
    so one shared seed would give every layer of the same shape the same weights.
    Deriving from the name keeps a layer's draw stable when other layers change.

    Args:
        seed: The model seed, or `None` for an unseeded draw.
        name: The layer name.

    Returns:
        A non-negative integer, or `None` when `seed` is `None`.
    """
    if seed is None:
        return None
    return zlib.crc32(f"{seed}/{name}".encode()) & 0x7FFFFFFF


@keras.saving.register_keras_serializable(package="keras_prune")
class FanOutNormal(keras.initializers.RandomNormal):
    """He normal with fan-out, N(0, sqrt(2 / (kh * kw * output channels))), untruncated, with the
    fan-out read from the shape it is called with.

    This is PyTorch's `kaiming_normal_(mode="fan_out")` and the explicit `normal_(0, sqrt(2 / n))`
    of the Pruning-from-Scratch models, where `n` counts the output channels of the layer being
    built: a layer widened by `expand_channels` or rebuilt narrower by `reinitialize` draws with
    its own width, not the original one (a fixed `RandomNormal` would keep the original's). A
    depthwise kernel `(kh, kw, channels, multiplier)` has `channels * multiplier` outputs.
    At the original width it draws exactly what `RandomNormal` with that stddev and seed draws.
    """

    def __init__(self, depthwise=False, seed=None, **kwargs):
        super().__init__(mean=0.0, stddev=1.0, seed=seed)
        self.depthwise = bool(depthwise)

    def __call__(self, shape, dtype=None):
        fan_out = math.prod(shape[:-2]) * shape[-1] * (shape[-2] if self.depthwise else 1)
        return keras.random.normal(shape, mean=0.0, stddev=math.sqrt(2.0 / fan_out), seed=self.seed, dtype=dtype)

    def get_config(self):
        config = super().get_config()
        config.pop("mean", None)
        config.pop("stddev", None)
        return {**config, "depthwise": self.depthwise}

    def plain(self, shape):
        """The stock Keras initializer with this one's distribution for kernels of `shape`'s rank:
        `VarianceScaling` with fan-out, over every axis of a depthwise kernel (Keras' own fan-out
        would leave its channels out). An exported model names it, so that it loads without
        keras_prune."""
        axes = {"input_axes": [len(shape) - 2], "output_axes": list(range(len(shape)))} if self.depthwise else {}
        return keras.initializers.VarianceScaling(
            2.0, mode="fan_out", distribution="untruncated_normal", seed=self.get_config()["seed"], **axes
        )


def conv_normal(seed, name, *, depthwise=False):
    """`FanOutNormal` seeded for layer `name` (see there)."""
    return FanOutNormal(depthwise=depthwise, seed=layer_seed(seed, name))


def he_normal_fan_in(seed, name):
    """He normal with fan-in, untruncated."""
    return keras.initializers.VarianceScaling(
        2.0, mode="fan_in", distribution="untruncated_normal", seed=layer_seed(seed, name)
    )


def normal(stddev, seed, name):
    """N(0, stddev), untruncated."""
    return keras.initializers.RandomNormal(stddev=stddev, seed=layer_seed(seed, name))


def caffe_xavier(seed, name):
    """Caffe's "xavier" filler: U(+-sqrt(3 / fan_in)), which is Keras' LeCun uniform."""
    return keras.initializers.LecunUniform(seed=layer_seed(seed, name))


def torch_linear(seed, name, fan_in):
    """PyTorch's default `nn.Linear` init: kernel and bias both U(+-1/sqrt(fan_in)).

    Returns:
        A `(kernel_initializer, bias_initializer)` pair.
    """
    bound = 1.0 / math.sqrt(fan_in)
    kernel = keras.initializers.VarianceScaling(
        1.0 / 3.0, mode="fan_in", distribution="uniform", seed=layer_seed(seed, name)
    )
    bias = keras.initializers.RandomUniform(
        -bound, bound, seed=layer_seed(seed, f"{name}/bias")
    )
    return kernel, bias


def input_stem(input_shape, min_size=None):
    """Creates the model input and, if needed, a resizing stem.

    Args:
        input_shape: The checked input shape.
        min_size: If set, `(height, width, channels)` inputs smaller than this on a
            side are resized (bilinear) to `max(side, min_size)` by a `Resizing`
            layer named "resize", so architectures with a minimum size accept any
            dataset.

    Returns:
        `(inputs, x)`: the `keras.Input` tensor and the tensor the body starts from.
    """
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    if min_size is not None:
        height, width = input_shape[0], input_shape[1]
        if height < min_size or width < min_size:
            x = layers.Resizing(
                max(height, min_size), max(width, min_size), name="resize"
            )(x)
    return inputs, x
