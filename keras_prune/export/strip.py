"""`strip`: turn a model with keras_prune layers into a plain, physically smaller one.

Weight masks are multiplied into the kernels and the masked layers become the Keras
layers they extend (a `GatedBatchNormalization` becomes a BatchNormalization, its gate
folded in). A channel that a `ChannelMask` or `ChannelGate` sets to zero is
removed when that is exact: wherever the channel reaches a layer that mixes channels
(convolution, Dense), it is zero there. Gate values that survive are folded into the
BatchNormalization or linear layer just before the gate.
"""

import numpy as np
import keras
from keras import layers, ops

from keras_prune.graph.dependency import analyze
from keras_prune.graph.rules import SPATIAL_LAYERS
from keras_prune.graph.surgery import kept_slices, layer_from_config, rebuild, resized_config, sliced_weights
from keras_prune.layers.gates import ChannelGate, ChannelGroupGate, ChannelMask, GatedBatchNormalization
from keras_prune.layers.masked import MASKED_LAYERS
from keras_prune.models._common import FanOutNormal

__all__ = ["pruning_layers", "strip", "removable_channels"]

_MIXING = (
    layers.Conv1D,
    layers.Conv2D,
    layers.Conv3D,
    layers.Conv1DTranspose,
    layers.Conv2DTranspose,
    layers.Conv3DTranspose,
    layers.SeparableConv1D,
    layers.SeparableConv2D,
    layers.Dense,
)
_ZERO_PRESERVING = (
    # f(0) = 0 channel by channel: rectifiers, dropout, and every spatial pass-through
    # layer (pooling, padding, cropping, resampling, flattening) of the channel rules.
    layers.ReLU,
    layers.LeakyReLU,
    layers.ELU,
    layers.PReLU,
    layers.Dropout,
    layers.SpatialDropout1D,
    layers.SpatialDropout2D,
    layers.SpatialDropout3D,
    layers.GaussianDropout,
    layers.AlphaDropout,
    layers.Identity,
    layers.Flatten,
    layers.Reshape,
    *SPATIAL_LAYERS,
)


def _gate_values(layer):
    if isinstance(layer, ChannelMask):
        return np.asarray(layer.prune_mask.numpy())
    return np.asarray(layer.gate.numpy())


def _zero_at_zero(layer):
    if isinstance(layer, layers.Resizing) and layer.pad_to_aspect_ratio and layer.fill_value != 0:
        return False  # the padding it adds is fill_value in every channel
    if isinstance(layer, _ZERO_PRESERVING):
        return True
    if isinstance(layer, layers.Activation):
        return float(ops.convert_to_numpy(layer.activation(ops.zeros((1,))))[0]) == 0.0
    return False


def _output_zeros(graph, call, zeros):
    """Which output positions of `call` are certainly zero, given its inputs'."""
    op = call.op
    ins = [zeros.get(k) for k in call.inputs]
    out_ids = graph.tensor_channels.get(call.outputs[0]) if call.outputs else None
    if out_ids is None or ins[0] is None:
        return None
    if isinstance(op, (ChannelMask, ChannelGate)):
        return ins[0] | (_gate_values(op) == 0)
    if isinstance(op, GatedBatchNormalization):  # BN shifts a zero input; only a zero gate zeroes
        return _gate_values(op) == 0
    if isinstance(op, layers.Concatenate) and all(z is not None for z in ins):
        joined = np.concatenate(ins)
        return joined if joined.size == out_ids.size else None
    same = [z for z in ins if z is not None and z.size == out_ids.size]
    if isinstance(op, layers.Multiply) and same:
        return np.logical_or.reduce(same)
    if isinstance(op, (layers.Add, layers.Subtract, layers.Average, layers.Maximum, layers.Minimum)):
        return np.logical_and.reduce(same) if len(same) == len(ins) else None
    if _zero_at_zero(op):
        if ins[0].size == out_ids.size:
            return ins[0]
        if out_ids.size % ins[0].size == 0:
            return np.tile(ins[0], out_ids.size // ins[0].size)
    return None


def removable_channels(graph):
    """`keep` for `prune_channels`: every channel except those a gate zeroes exactly."""
    zeros = {k: np.zeros(len(ids), bool) for k, ids in graph.tensor_channels.items() if ids is not None}
    needed = np.zeros(len(graph.root), dtype=bool)
    zeroed = np.zeros(len(graph.root), dtype=bool)
    for call in graph.trace.calls:
        if isinstance(call.op, _MIXING) and call.inputs:
            ids, z = graph.tensor_channels.get(call.inputs[0]), zeros.get(call.inputs[0])
            if ids is not None:
                needed[graph.root[ids[~z]]] = True
        out = _output_zeros(graph, call, zeros)
        for key in call.outputs:
            ids = graph.tensor_channels.get(key)
            if ids is None:
                continue
            z = out if out is not None and out.size == ids.size else np.zeros(ids.size, bool)
            zeros[key] = z
            zeroed[graph.root[ids[z]]] = True
    keep = {}
    for index, group in enumerate(graph.groups):
        if not group.prunable:
            continue
        roots = [r for r, g in graph.group_of_root.items() if g == index]
        drop = {graph.channel_of_root[r] for r in roots if zeroed[r] and not needed[r]}
        if drop:
            kept = [c for c in range(group.size) if c not in drop] or [0]
            keep[group.id] = kept
    return keep


def _fold_gates(graph, alive):
    """{layer path: {weight: value}} with each gate's surviving values folded into its producer."""
    made_by, uses, calls_of = graph.trace.made_by, graph.trace.uses, graph.trace.calls_per_op
    folded = {}
    for call in graph.trace.calls:
        if not isinstance(call.op, (ChannelMask, ChannelGate)):
            continue
        scale = _gate_values(call.op)
        survives = alive[graph.tensor_channels[call.inputs[0]]]
        if np.all(scale[survives] == 1.0):
            continue
        source = made_by.get(call.inputs[0])
        layer = getattr(source, "op", None)
        foldable = (
            source is not None
            and uses.get(call.inputs[0]) == 1
            and calls_of.get(id(layer)) == 1
            and _fold_target(layer) is not None
        )
        if not foldable:
            if isinstance(layer, layers.BatchNormalization) and not layer.scale:
                reason = f"the BatchNormalization before it, {layer.name!r}, has no scale (scale=False)"
            else:
                reason = ("it does not directly follow a BatchNormalization or linear Conv/Dense layer "
                          "used only by it")
            raise ValueError(
                f"Cannot strip {call.path!r}: some surviving channels have gate values other than 1, "
                f"and {reason}, so there is nothing to fold it into. Put the gate right after such a layer."
            )
        path = source.path
        values = folded.get(path) or _plain_values(layer)
        for weight_name in _fold_target(layer):
            values[weight_name] = values[weight_name] * scale
        folded[path] = values
    return folded


def _fold_target(layer):
    """The weights a per-channel scale after `layer` multiplies into, or None."""
    if isinstance(layer, layers.BatchNormalization) and layer.scale:
        return ("gamma", "beta") if layer.center else ("gamma",)
    linear = getattr(layer, "activation", None) in (None, keras.activations.linear)
    if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D, layers.Dense)) and linear:
        if getattr(layer, "groups", 1) == 1:
            return ("kernel", "bias") if layer.use_bias else ("kernel",)
    return None


def _plain_values(layer):
    """{weight: value} with weight masks applied and the masks themselves dropped (and a
    GatedBatchNormalization's gate folded into its scale and offset)."""
    if isinstance(layer, GatedBatchNormalization):
        return layer.batch_norm_weights()
    values = {w.name: np.asarray(w.numpy()) for w in layer.weights}
    for weight_name, mask_name in getattr(layer, "prune_masks", {}).items():
        if mask_name in values:
            values[weight_name] = values[weight_name] * values.pop(mask_name)
    return values


def _plain_class(layer):
    if type(layer) is GatedBatchNormalization:
        return layers.BatchNormalization
    for plain, masked in MASKED_LAYERS.items():
        if type(layer) is masked:
            return plain
    return type(layer)


def pruning_layers(model):
    """The keras_prune layers (weight masks, channel masks, gates) inside `model`, nested models
    included: what `strip` turns into plain Keras layers."""
    kinds = (ChannelMask, ChannelGate, ChannelGroupGate, GatedBatchNormalization, *MASKED_LAYERS.values())
    return [layer for layer in model._flatten_layers() if isinstance(layer, kinds)]


def strip(model):
    """Returns a plain Keras model equivalent to `model` with no keras_prune layers.

    Masks are folded into kernels, channels zeroed by channel masks or gates are
    physically removed (where exact), and the remaining gate values are folded into the
    preceding layer. Raises ValueError for runtime gates (`ChannelGroupGate`), which
    decide per input and have no static equivalent.
    """
    graph = analyze(model)
    for call in graph.trace.calls:
        if isinstance(call.op, ChannelGroupGate):
            raise ValueError(
                f"Cannot strip runtime gate {call.path!r}: it chooses channels per input. "
                "Export a runtime-pruned model with keras_prune.methods.rnp instead."
            )
    keep = removable_channels(graph)
    alive = graph.alive(keep)
    folded = _fold_gates(graph, alive)
    slices = kept_slices(graph, alive)

    def layer_for(path, layer, config):
        if isinstance(layer, (ChannelMask, ChannelGate)):
            return None
        if hasattr(layer, "prune_masks"):
            config.pop("straight_through", None)
        if isinstance(layer, GatedBatchNormalization):
            config.pop("initial_gate", None)
        return layer_from_config(layer, config, _plain_class(layer))

    def weights_for(path, old, new):
        values = folded.get(path) or _plain_values(old)
        return sliced_weights(path, old, slices, values)

    plain = rebuild(graph, config_for=resized_config(graph, alive), layer_for=layer_for, weights_for=weights_for)
    return _plain_initializers(plain)


_INITIALIZED = {  # initializer: the weights it may draw (DepthwiseConv2D's is its `kernel`)
    "kernel_initializer": ("kernel",),
    "depthwise_initializer": ("depthwise_kernel", "kernel"),
    "pointwise_initializer": ("pointwise_kernel",),
}


def _plain_initializers(model):
    """Gives the layers of `model` that the zoo built with `FanOutNormal` the stock Keras
    initializer that draws the same way: the stripped model's config then names only Keras
    objects, and its .keras file loads where keras_prune is not installed."""
    for layer in model.layers:
        for attribute, weights in _INITIALIZED.items():
            initializer = getattr(layer, attribute, None)
            if isinstance(initializer, FanOutNormal):
                weight = next(getattr(layer, w) for w in weights if hasattr(layer, w))
                setattr(layer, attribute, initializer.plain(tuple(weight.shape)))
    return model
