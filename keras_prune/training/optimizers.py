"""Optimizers whose weight decay is an L2 term of the gradient, as in the papers' code.

PyTorch's `SGD(weight_decay=wd)` (the code of Pruning from Scratch, Network Slimming and
"Where to Prune") and Caffe add `wd * w` to the gradient, which then passes through
momentum. Keras's `weight_decay` is decoupled instead (`w -= lr * wd * w` once per step,
outside momentum): at momentum 0.9 the same `wd` shrinks the weights about ten times less,
so a recipe's `--weight_decay=1e-4` would act like 1e-5.
"""

import keras
from keras import ops

__all__ = ["L2SGD", "L2Adam", "make_optimizer"]


class _GradientL2:
    """Adds `l2 * variable` to each gradient before the optimizer's own update."""

    def __init__(self, *args, l2=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if not l2 >= 0.0:
            raise ValueError(f"Expected l2 >= 0. Received: l2={l2!r}")
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = ops.add(gradient, ops.multiply(ops.cast(self.l2, variable.dtype), variable))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


@keras.saving.register_keras_serializable(package="keras_prune")
class L2SGD(_GradientL2, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with `l2` weight decay in the gradient (PyTorch's `weight_decay`)."""


@keras.saving.register_keras_serializable(package="keras_prune")
class L2Adam(_GradientL2, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with `l2` weight decay in the gradient (PyTorch's `Adam(weight_decay=)`)."""


def make_optimizer(name, learning_rate, *, weight_decay=None):
    """SGD (momentum 0.9) or Adam; a plain Keras one when there is no weight decay."""
    if name == "sgd":
        if weight_decay:
            return L2SGD(learning_rate, momentum=0.9, l2=weight_decay)
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    if name == "adam":
        return L2Adam(learning_rate, l2=weight_decay) if weight_decay else keras.optimizers.Adam(learning_rate)
    raise ValueError(f"optimizer must be 'sgd' or 'adam'. Received: optimizer={name!r}")
