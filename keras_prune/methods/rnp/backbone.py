"""The RNP backbone: a plain chain of conv blocks whose output channel groups run per input.

`RuntimeBackbone` splits a chain model into a stem (everything up to the second conv:
the first conv is never pruned), one stage per prunable conv (the conv and the
per-channel layers after it), and a head (from the first pooling/flatten/Dense layer).
Two equivalent ways to run a stage with the first `a` groups:
- masked (any batch, training): the full stage, then `ChannelGroupGate` zeroes the rest;
- sliced (serving): the conv with its kernel cut to the kept input and output channels,
  so skipped groups cost nothing.
Channels are ordered so that group 1 holds the leading channels (`reorder_channels`).
"""

import itertools
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_prune.errors import PruneError
from keras_prune.graph import count_flops
from keras_prune.graph.trace import Trace
from keras_prune.layers.gates import ChannelGroupGate, group_sizes
from keras_prune.methods.rnp.settings import ORDERS

__all__ = ["RuntimeBackbone", "split_chain"]

_PER_CHANNEL = (
    keras.layers.BatchNormalization,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.Dropout,
)
_HEAD_START = (keras.layers.Flatten, keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)


def _chain_layers(model):
    """The model's layers in order, if each is called once and takes exactly the previous one's output.

    Read from the model's graph, not from the layers' call history: a Sequential model that
    Keras loaded from a file has called its layers several times while rebuilding it.
    """
    trace = Trace(model)
    layers, seen = [], set()
    previous = trace.inputs[0] if len(trace.inputs) == 1 else None
    for call in trace.calls:
        if call.scope:
            raise PruneError(
                f"rnp reads a flat chain of layers, and {call.path!r} sits in a nested model: save the model "
                "with its layers at the top level."
            )
        if not isinstance(call.op, keras.layers.Layer) or id(call.op) in seen or call.inputs != (previous,):
            raise PruneError(
                "rnp needs a plain chain of layers (no branches, residual additions, shared layers "
                f"or keras.ops calls): {call.path!r} does not take the previous layer's output alone. "
                "Use a VGG-style model such as --model=conv4 or --model=vgg16."
            )
        seen.add(id(call.op))
        layers.append(call.op)
        previous = call.outputs[0] if len(call.outputs) == 1 else None
    return layers


def split_chain(model, groups):
    """`(stem, stages, head, channels)` of a chain model with `groups` channel groups per prunable conv.

    Reads the model only (no layer is created), so the pipeline's preflight can run it
    before pre-training.

    Raises:
        PruneError: if the model is not a plain chain of Conv2D blocks ending in a classifier,
            or a prunable conv has fewer channels than `groups`.
    """
    layers = _chain_layers(model)
    convs = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Conv2D)]
    head = next((i for i, layer in enumerate(layers) if isinstance(layer, (*_HEAD_START, keras.layers.Dense))),
                len(layers))
    convs = [i for i in convs if i < head]
    if len(convs) < 2:
        raise PruneError(
            f"rnp needs at least two Conv2D layers before the classifier (the first is never pruned); "
            f"model {model.name!r} has {len(convs)}."
        )
    for i in convs:
        conv = layers[i]
        if type(conv) is not keras.layers.Conv2D or conv.groups != 1 or conv.data_format != "channels_last":
            raise PruneError(f"rnp prunes plain channels_last Conv2D layers; {conv.name!r} is not one.")
    stages = []
    for start, end in zip(convs[1:], convs[2:] + [head]):
        stage = layers[start:end]
        for layer in stage[1:]:
            if not isinstance(layer, _PER_CHANNEL):
                raise PruneError(
                    f"rnp: layer {layer.name!r} ({type(layer).__name__}) sits between two convs, and rnp allows "
                    f"only these layers there: {', '.join(t.__name__ for t in _PER_CHANNEL)}."
                )
        stages.append(stage)
    if not any(isinstance(layer, keras.layers.Dense) for layer in layers[head:]):
        raise PruneError(
            "rnp: the class scores must come from a Dense layer after the Flatten or global pooling; here the "
            f"last conv, {layers[convs[-1]].name!r}, gives them, and pruning its channels would drop classes."
        )
    channels = [int(stage[0].filters) for stage in stages]
    for stage, count in zip(stages, channels):
        if count < groups:
            raise PruneError(
                f"--rnp_groups={groups} is more than the {count} channels of {stage[0].name!r}; use fewer groups."
            )
    return layers[: convs[1]], stages, layers[head:], channels


class RuntimeBackbone:
    """A chain model seen as stem, prunable stages and head (see the module docstring).

    Args:
        model: a functional or Sequential chain of Conv2D blocks ending in a classifier.
        groups: k, channel groups per prunable conv.
    """

    def __init__(self, model, groups):
        self.model = model
        self.groups = int(groups)
        self.stem, self.stages, self.head, self.channels = split_chain(model, self.groups)
        self.boundaries = [np.cumsum(group_sizes(c, self.groups)).tolist() for c in self.channels]
        self.gates = [ChannelGroupGate(self.groups, name=f"rnp_gate_{t}") for t in range(len(self.stages))]
        self.state_sizes = [int(self.stem[-1].output.shape[-1])] + self.channels[:-1]
        self._flops_table()

    @property
    def steps(self):
        return len(self.stages)

    @property
    def trainable_variables(self):
        return self.model.trainable_variables

    # ----- forward passes -------------------------------------------------------------

    def run_stem(self, x, training=False):
        for layer in self.stem:
            x = layer(x, training=training)
        return x

    def run_stage(self, t, x, active_groups, training=False):
        """Stage `t` with the first `active_groups` (batch,) groups kept, by masking."""
        for layer in self.stages[t]:
            x = layer(x, training=training)
        return self.gates[t]([x, active_groups])

    def run_head(self, x, training=False):
        for layer in self.head:
            x = layer(x, training=training)
        return x

    def folded_stage(self, t):
        """Inference parameters of stage `t`: `(kernel, bias, activation, rest)` as arrays.

        A BatchNormalization right after a conv without activation is folded into the
        kernel and bias (as deployment does for the dense model); `rest` is the stage's
        remaining layers.
        """
        conv, rest = self.stages[t][0], list(self.stages[t][1:])
        kernel = np.asarray(conv.kernel.numpy())
        bias = np.asarray(conv.bias.numpy()) if conv.use_bias else np.zeros(kernel.shape[-1], kernel.dtype)
        if rest and isinstance(rest[0], keras.layers.BatchNormalization) and conv.activation.__name__ == "linear":
            bn = rest.pop(0)
            _check_last_axis(bn)
            scale = 1.0 / np.sqrt(np.asarray(bn.moving_variance.numpy()) + bn.epsilon)
            if bn.scale:
                scale = scale * np.asarray(bn.gamma.numpy())
            bias = (bias - np.asarray(bn.moving_mean.numpy())) * scale
            bias = bias + np.asarray(bn.beta.numpy()) if bn.center else bias
            kernel = kernel * scale
        return kernel, bias, conv.activation, rest

    def run_stage_sliced(self, t, x, channels, folded):
        """Inference of stage `t` computing only its first `channels` output channels.

        `x` holds only the channels the previous stage computed; the kernel of `folded`
        (see `folded_stage`) is cut to them and to `channels` outputs, so the skipped
        channels are never computed.
        """
        kernel, bias, activation, rest = folded
        conv = self.stages[t][0]
        y = tf.nn.conv2d(x, kernel[:, :, : tf.shape(x)[-1], :channels], strides=conv.strides,
                         padding=conv.padding.upper(), dilations=conv.dilation_rate)
        y = activation(tf.nn.bias_add(y, bias[:channels]))  # Conv2D + BiasAdd + ReLU fuse in Grappler
        for layer in rest:
            y = _sliced_batch_norm(layer, y, channels) if isinstance(layer, keras.layers.BatchNormalization) \
                else layer(y, training=False)
        return y

    @staticmethod
    def pad_channels(x, channels):
        """Zero-fills the channels a sliced stage skipped, up to `channels` (as masking leaves them)."""
        missing = channels - tf.shape(x)[-1]
        return tf.pad(x, [[0, 0]] * (len(x.shape) - 1) + [[0, missing]])

    # ----- cost -----------------------------------------------------------------------

    def _flops_table(self):
        by_layer = count_flops(self.model).by_layer
        self.full_flops = int(sum(by_layer.values()))
        self.fixed_flops = sum(int(by_layer.get(layer.name, 0)) for layer in self.stem)
        self.stage_flops = [int(by_layer.get(stage[0].name, 0)) for stage in self.stages]
        head_flops = [(layer.name, int(by_layer[layer.name])) for layer in self.head if by_layer.get(layer.name)]
        self.head_first, self.head_first_flops = head_flops[0] if head_flops else (None, 0)
        self.fixed_flops += sum(flops for _, flops in head_flops[1:])
        # The head's first layer skips the last stage's uncomputed channels only if they reach it
        # as zeros: through pooling, Flatten or Dropout, not a BatchNormalization that shifts them.
        before = list(itertools.takewhile(lambda layer: layer.name != self.head_first, self.head))
        self.head_scaled = all(isinstance(layer, (*_HEAD_START, keras.layers.Dropout)) for layer in before)

    def flops_per_sample(self, actions):
        """MACs of the backbone per sample for 0-based actions (batch, steps).

        A conv costs its full MACs times the kept fraction of its input channels times
        the kept fraction of its output channels; the first classifier layer is scaled by
        the last stage's kept fraction when the skipped channels reach it as zeros.
        """
        return float(self.fixed_flops) + sum(flops for _, _, flops in self._layer_costs(actions))

    def mean_layer_costs(self, actions):
        """`{layer name: (mean output channels computed or None, mean MACs)}` over the samples of
        0-based `actions` (batch, steps), for the prunable convs and the head's first layer (the
        layers whose cost the decisions change; `flops_per_sample` adds the fixed rest)."""
        return {name: (None if channels is None else float(np.mean(channels)), float(np.mean(flops)))
                for name, channels, flops in self._layer_costs(actions)}

    def _layer_costs(self, actions):
        """(name, output channels per sample or None, MACs per sample) of each layer the actions scale."""
        actions = np.asarray(actions)
        in_fraction = np.ones(actions.shape[0])
        costs = []
        for t in range(self.steps):
            channels = np.asarray(self.boundaries[t])[actions[:, t]]
            out_fraction = channels / self.channels[t]
            costs.append((self.stages[t][0].name, channels, self.stage_flops[t] * in_fraction * out_fraction))
            in_fraction = out_fraction
        if self.head_first is not None:
            costs.append((self.head_first, None, self.head_first_flops * (in_fraction if self.head_scaled else 1.0)))
        return costs


def _check_last_axis(layer):
    if layer.axis not in (-1, 3, [-1], [3]):
        raise PruneError(f"rnp: BatchNormalization {layer.name!r} must normalise the last (channel) axis.")


def _sliced_batch_norm(layer, x, channels):
    _check_last_axis(layer)
    inv = tf.math.rsqrt(layer.moving_variance[:channels] + layer.epsilon)
    if layer.scale:
        inv = inv * layer.gamma[:channels]
    y = (x - layer.moving_mean[:channels]) * inv
    return y + layer.beta[:channels] if layer.center else y


def reorder_channels(backbone, order):
    """Permutes each stage's output channels in place (function-preserving).

    "norm": descending L2 norm of the conv filters as inference computes them (a BatchNorm
    right after the conv folded in: it divides each channel by its own deviation, so the raw
    filter's norm says nothing of the channel's strength), so group 1 holds the strongest
    filters; "natural": unchanged.
    """
    if order not in ORDERS:
        raise PruneError(f"--rnp_order must be one of {ORDERS}. Received: {order!r}")
    if order == "natural":
        return
    for t, stage in enumerate(backbone.stages):
        conv = stage[0]
        folded = backbone.folded_stage(t)[0]
        perm = np.argsort(-np.sqrt((folded**2).sum(axis=(0, 1, 2))), kind="stable")
        kernel = np.asarray(conv.kernel.numpy())
        conv.kernel.assign(kernel[..., perm])
        if conv.use_bias:
            conv.bias.assign(np.asarray(conv.bias.numpy())[perm])
        for layer in stage[1:]:
            for weight in layer.weights:
                weight.assign(np.asarray(weight.numpy())[perm])
        consumer = backbone.stages[t + 1][0] if t + 1 < backbone.steps else _first_dense(backbone.head)
        kernel = np.asarray(consumer.kernel.numpy())
        if isinstance(consumer, keras.layers.Conv2D):
            consumer.kernel.assign(kernel[:, :, perm, :])
        else:
            channels = len(perm)
            rows = kernel.reshape(-1, channels, kernel.shape[-1])[:, perm, :]
            consumer.kernel.assign(rows.reshape(kernel.shape))


def check_head(head, order):
    """Raises a PruneError if `order` cannot permute the last stage's channels into `head`."""
    if order != "natural":
        _first_dense(head)


def _first_dense(head):
    for layer in head:
        if isinstance(layer, keras.layers.Dense):
            return layer
        if not isinstance(layer, (*_HEAD_START, keras.layers.Dropout)):
            break
    raise PruneError(
        "rnp: the classifier must start with Flatten or global pooling followed by Dense (a model whose last "
        "conv gives the class scores would have them pruned); "
        f"this head is {' -> '.join(type(layer).__name__ for layer in head) or 'empty'}."
    )
