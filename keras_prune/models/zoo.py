"""`get_model`: build any model of the zoo by name, with checked arguments.

Every model is a channels_last functional `keras.Model` with deterministic layer
names, built from standard Keras layers only, and outputs **logits** (no softmax):
train it with `from_logits=True` losses.
"""

import dataclasses
import math
import numbers
import os
import warnings
from typing import Callable

import keras

from keras_prune.models import alexnet
from keras_prune.models import conv4
from keras_prune.models import lenet
from keras_prune.models import mobilenet
from keras_prune.models import resnet50
from keras_prune.models import resnet_cifar
from keras_prune.models import vgg


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One row of the zoo: a builder and the input rank it takes (None: any rank)."""

    build: Callable[..., keras.Model]
    input_rank: int | None = 3


_ZOO = {
    "lenet300_100": _Entry(lenet.lenet300_100, input_rank=None),
    "lenet5": _Entry(lenet.lenet5),
    "vgg16": _Entry(vgg.vgg16),
    "conv4": _Entry(conv4.conv4),
    "resnet20": _Entry(resnet_cifar.resnet20),
    "resnet32": _Entry(resnet_cifar.resnet32),
    "resnet56": _Entry(resnet_cifar.resnet56),
    "resnet110": _Entry(resnet_cifar.resnet110),
    "resnet50": _Entry(resnet50.resnet50),
    "mobilenet_v1": _Entry(mobilenet.mobilenet_v1),
    "mobilenet_v2": _Entry(mobilenet.mobilenet_v2),
    "alexnet": _Entry(alexnet.alexnet),
}

MODEL_NAMES = tuple(_ZOO)


def get_model(name, input_shape, num_classes, *, width=1.0, weights=None, seed=None):
    """Builds a model of the zoo.

    Args:
        name: One of `MODEL_NAMES`.
        input_shape: Shape of one example without the batch axis:
            `(height, width, channels)` for image models, any shape for
            "lenet300_100" (it flattens). Models with a minimum input size resize
            smaller inputs in their stem (see each module).
        num_classes: Number of logits; never scaled by `width`.
        width: Multiplies every channel and hidden unit count, keeping at least one
            (`max(1, round(c * width))`; the MobileNets use their `alpha` rounding).
            1.25 is Pruning from Scratch's expansion.
        weights: `None` for random initialisation, or the path of a weights file to
            load with `model.load_weights`, e.g. a `keras.applications` ImageNet file
            for "resnet50" (width 1.0) or a MobileNet (width = the file's `alpha`).
        seed: Integer seed that makes the initial weights deterministic, or `None`.

    Returns:
        A functional `keras.Model` named `name`.

    Raises:
        ValueError: If an argument is invalid, or the weights file does not fit.
    """
    if not isinstance(name, str) or name not in _ZOO:
        raise ValueError(
            f"Expected `name` to be one of {', '.join(MODEL_NAMES)}. Received: name={name!r}"
        )
    entry = _ZOO[name]
    input_shape = _check_input_shape(input_shape, entry.input_rank, name)
    _check_num_classes(num_classes)
    _check_width(width)
    _check_weights(weights)
    if seed is not None and not _is_int(seed):
        raise ValueError(f"Expected `seed` to be an integer or None. Received: seed={seed!r}")
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "The model zoo builds channels_last models; set "
            "keras.config.set_image_data_format('channels_last') first. Received: "
            f"keras.config.image_data_format()={keras.config.image_data_format()!r}"
        )
    model = entry.build(
        input_shape,
        int(num_classes),
        width=float(width),
        seed=None if seed is None else int(seed),
    )
    if weights is not None:
        _load_weights(model, weights, input_shape)
    return model


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_input_shape(input_shape, rank, name):
    expected = (
        "a tuple of positive integers"
        if rank is None
        else "(height, width, channels) of positive integers (channels_last)"
    )
    if (
        not isinstance(input_shape, (tuple, list))
        or not input_shape
        or (rank is not None and len(input_shape) != rank)
        or not all(_is_int(dim) and dim > 0 for dim in input_shape)
    ):
        raise ValueError(
            f"Expected `input_shape` for model {name!r} to be {expected}, without the "
            f"batch axis. Received: input_shape={input_shape!r}"
        )
    return tuple(int(dim) for dim in input_shape)


def _check_num_classes(num_classes):
    if not _is_int(num_classes) or num_classes < 1:
        raise ValueError(
            "Expected `num_classes` to be a positive integer. "
            f"Received: num_classes={num_classes!r}"
        )


def _check_width(width):
    if (
        isinstance(width, bool)
        or not isinstance(width, numbers.Real)
        or not math.isfinite(width)
        or width <= 0
    ):
        raise ValueError(
            f"Expected `width` to be a finite number > 0. Received: width={width!r}"
        )


def _check_weights(weights):
    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)) or not os.path.isfile(weights):
        raise ValueError(
            "Expected `weights` to be None (random initialisation) or the path of an "
            f"existing weights file. Received: weights={weights!r}"
        )


def _load_weights(model, weights, input_shape):
    # A failed `.weights.h5` load also warns about every part it could not match;
    # those warnings describe the same failure as the error, so they are kept back,
    # and only a successful load's warnings reach the caller.
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.load_weights(weights)
    except ValueError as error:
        channels = input_shape[-1]
        if len(input_shape) == 3 and channels != 3:
            # The common case: ImageNet weights (3-channel RGB kernels in the first
            # conv) loaded into a model built for grayscale or other inputs.
            raise ValueError(
                f"Could not load weights={os.fspath(weights)!r} into model "
                f"{model.name!r}: the model was built for {channels}-channel inputs, "
                "but ImageNet weights (and any file saved from a 3-channel model) "
                "expect 3 channels. Build it with input_shape=(height, width, 3) to "
                f"load them, or use weights=None. Received: input_shape={input_shape}"
            ) from error
        raise
    for warning in caught:
        warnings.warn_explicit(
            warning.message, warning.category, warning.filename, warning.lineno
        )
