"""Weight-masked layers: Dense and convolutions whose weights are multiplied by a mask.

Each kernel (and bias) has a non-trainable 0/1 `prune_mask` of the same shape. With
`straight_through=True` the forward pass uses the masked weights but the gradient
reaches every weight, pruned or not, as Dynamic Network Surgery and OLMP need: a pruned
weight keeps learning and can be spliced back when it grows.
"""

import keras
from keras import ops

__all__ = ["MaskedConv2D", "MaskedDense", "MaskedDepthwiseConv2D", "MASKED_LAYERS"]


class _WeightMasks:
    """Mask bookkeeping shared by the masked layers (a mixin)."""

    prune_masks = {"kernel": "prune_mask", "bias": "bias_prune_mask"}

    def _init_masks(self, straight_through):
        self.straight_through = bool(straight_through)

    def _build_masks(self):
        self.prune_mask = self.add_weight(
            name="prune_mask", shape=self.kernel.shape, initializer="ones", trainable=False
        )
        self.bias_prune_mask = None
        if self.use_bias:
            self.bias_prune_mask = self.add_weight(
                name="bias_prune_mask", shape=self.bias.shape, initializer="ones", trainable=False
            )

    def _masked(self, weight, mask):
        if self.straight_through:
            return weight + ops.stop_gradient(weight * mask - weight)
        return weight * mask

    def masked_kernel(self):
        """The kernel as the forward pass sees it."""
        return self._masked(self.kernel, self.prune_mask)

    def masked_bias(self):
        """The bias as the forward pass sees it (None without a bias)."""
        return None if not self.use_bias else self._masked(self.bias, self.bias_prune_mask)

    def _add_bias(self, outputs):
        if not self.use_bias:
            return outputs
        bias = self.masked_bias()
        if getattr(self, "data_format", "channels_last") == "channels_first":
            bias = ops.reshape(bias, (1, -1) + (1,) * (len(outputs.shape) - 2))
        return outputs + bias

    def save_own_variables(self, store):
        # Dense and Conv save only kernel and bias; the masks are state too.
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def _config_with_masks(self, config):
        return {**config, "straight_through": self.straight_through}


@keras.saving.register_keras_serializable(package="keras_prune")
class MaskedDense(_WeightMasks, keras.layers.Dense):
    """`keras.layers.Dense` with weight masks. Args as Dense, plus `straight_through`."""

    def __init__(self, units, straight_through=False, **kwargs):
        super().__init__(units, **kwargs)
        self._init_masks(straight_through)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_masks()

    def call(self, inputs, training=None):
        outputs = self._add_bias(ops.matmul(inputs, self.masked_kernel()))
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self):
        return self._config_with_masks(super().get_config())


@keras.saving.register_keras_serializable(package="keras_prune")
class MaskedConv2D(_WeightMasks, keras.layers.Conv2D):
    """`keras.layers.Conv2D` with weight masks. Args as Conv2D, plus `straight_through`."""

    def __init__(self, filters, kernel_size, straight_through=False, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self._init_masks(straight_through)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_masks()

    def call(self, inputs):
        outputs = self._add_bias(self.convolution_op(inputs, self.masked_kernel()))
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self):
        return self._config_with_masks(super().get_config())


@keras.saving.register_keras_serializable(package="keras_prune")
class MaskedDepthwiseConv2D(_WeightMasks, keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` with weight masks, plus `straight_through`."""

    def __init__(self, kernel_size, straight_through=False, **kwargs):
        super().__init__(kernel_size, **kwargs)
        self._init_masks(straight_through)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_masks()

    def call(self, inputs):
        outputs = ops.depthwise_conv(
            inputs,
            self.masked_kernel(),
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        outputs = self._add_bias(outputs)
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self):
        return self._config_with_masks(super().get_config())


MASKED_LAYERS = {
    keras.layers.Dense: MaskedDense,
    keras.layers.Conv2D: MaskedConv2D,
    keras.layers.DepthwiseConv2D: MaskedDepthwiseConv2D,
}
"""The plain Keras layer each masked layer stands in for (and is stripped back to)."""
