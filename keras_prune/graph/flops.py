"""FLOPs and parameter counts, for a model as it is or as it would be after pruning.

What is counted (multiply-accumulates, "MACs", the unit of the papers' tables):
- convolutions: k_h * k_w * (C_in / groups) * C_out * H_out * W_out (1-D/3-D alike);
- depthwise convolutions: k_h * k_w * C_out * H_out * W_out;
- separable convolutions: their depthwise and pointwise steps;
- transposed convolutions: k_h * k_w * C_in * C_out * H_in * W_in;
- Dense: in * out per position (times the leading axes for inputs of rank > 2).
Not counted: biases, batch normalisation (foldable into the convolution), activations,
pooling, element-wise merges, resizing. These are the conventions behind the published
figures (ResNet-50 v1.5 4.1 G, MobileNetV2 300 M, VGG-16 15.5 G, CIFAR ResNet-56 125 M); Keras'
`ResNet50` is the v1 layout, with its stride in the first 1x1 conv: 3.86 G.
"""

import dataclasses
import math

import numpy as np
from keras import layers

from keras_prune.graph.dependency import analyze

__all__ = ["FlopsCount", "ParamsCount", "count_flops", "count_params", "layer_macs"]


@dataclasses.dataclass(frozen=True)
class FlopsCount:
    """Multiply-accumulates of one forward pass of one example: total and per layer."""

    total: int
    by_layer: dict

    def __int__(self):
        return self.total


@dataclasses.dataclass(frozen=True)
class ParamsCount:
    """Parameters (prune masks excluded): total, non-zero, and per layer."""

    total: int
    nonzero: int
    by_layer: dict

    def __int__(self):
        return self.total


def _spatial(shape):
    return math.prod(int(d) for d in shape[1:-1])


def _split(op, shape):
    """`(channels, spatial size)` of a conv's input or output shape, in its data format."""
    if getattr(op, "data_format", "channels_last") == "channels_first":
        return int(shape[1]), math.prod(int(d) for d in shape[2:])
    return int(shape[-1]), _spatial(shape)


_DEPTHWISE = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
_SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)
_TRANSPOSED = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_CONV = (layers.Conv1D, layers.Conv2D, layers.Conv3D)


def layer_macs(op, in_shape, out_shape):
    """MACs of one call of `op` mapping `in_shape` to `out_shape` (batch axis first)."""
    if isinstance(op, _DEPTHWISE + _SEPARABLE + _TRANSPOSED + _CONV):
        (c_in, in_spatial), (c_out, out_spatial) = _split(op, in_shape), _split(op, out_shape)
        k = math.prod(op.kernel_size)
        if isinstance(op, _DEPTHWISE):
            return out_spatial * k * c_out
        if isinstance(op, _SEPARABLE):
            middle = c_in * op.depth_multiplier
            return out_spatial * (k * middle + middle * c_out)
        if isinstance(op, _TRANSPOSED):
            return in_spatial * k * c_in * c_out
        return out_spatial * k * (c_in // op.groups) * c_out
    if isinstance(op, layers.Dense):
        return _spatial(out_shape) * in_shape[-1] * out_shape[-1]
    return 0


def _check_static(graph):
    for call in graph.trace.calls:
        for key in (*call.inputs, *call.outputs):
            shape = graph.trace.shapes[key]
            if any(d is None for d in shape[1:]):
                raise ValueError(
                    "Counting FLOPs needs static shapes, but tensor of layer "
                    f"{call.path!r} has shape {shape}. Build the model on a fixed input "
                    "shape, e.g. keras.Input(shape=(224, 224, 3))."
                )


def _shape(graph, key, alive):
    shape = graph.trace.shapes[key]
    ids = graph.tensor_channels.get(key)
    if alive is None or ids is None or not shape:
        return shape
    return (*shape[:-1], int(alive[ids].sum()))


def count_flops(model, keep=None, *, graph=None, widths=None):
    """Counts the MACs of `model`, or of `model` pruned by `keep` or resized by `widths` (no surgery needed).

    Args:
        model: a functional or Sequential model with static input shape.
        keep: optional `{group_id: channel indices}` as for `prune_channels`.
        graph: an existing `analyze(model)` result, to avoid re-analysing.
        widths: optional `{group_id: channel count}`, between 1 and twice the group's size, in
            place of `keep`: the cost of a narrower or wider variant (`expand_channels`) unbuilt.

    Returns:
        A `FlopsCount` (per layer path and total).
    """
    if keep and widths:
        raise ValueError("count_flops takes `keep` or `widths`, not both.")
    graph = graph or analyze(model)
    _check_static(graph)
    alive = graph.copies(widths) if widths else (graph.alive(keep) if keep else None)
    by_layer = {}
    for call in graph.trace.calls:
        if not call.inputs or not call.outputs:
            continue
        in_shape = _shape(graph, call.inputs[0], alive)
        out_shape = _shape(graph, call.outputs[0], alive)
        macs = int(layer_macs(call.op, in_shape, out_shape))
        if macs:
            by_layer[call.path] = by_layer.get(call.path, 0) + macs
    return FlopsCount(sum(by_layer.values()), by_layer)


def _excluded(layer):
    """Names of a layer's weights that are masks, not parameters."""
    masks = set(getattr(layer, "prune_masks", {}).values())
    return masks | set(getattr(layer, "mask_weight_names", ()))


def count_params(model, keep=None, *, graph=None):
    """Counts parameters (masks excluded) and non-zero parameters (masks applied).

    With `keep`, counts what `prune_channels(model, keep)` would leave; the non-zero
    count then scales each weight's non-zero share by its kept fraction.
    """
    graph = graph or analyze(model)
    alive = graph.alive(keep) if keep else None
    kept_axes = {}
    if alive is not None:
        for layer, weight, axis, ids in graph.raw_members:
            kept_axes.setdefault((layer, weight), {})[axis] = int(alive[ids].sum())
    total = nonzero = 0
    by_layer = {}
    for path, layer in graph.layers.items():
        if not hasattr(layer, "weights"):
            continue
        count = 0
        for w in layer.weights:
            if w.name in _excluded(layer):
                continue
            shape = list(w.shape)
            for axis, kept in kept_axes.get((path, w.name), {}).items():
                shape[axis] = kept
            size = math.prod(shape)
            value = _effective(layer, w)
            full = max(value.size, 1)
            count += size
            nonzero += int(round(np.count_nonzero(value) * size / full))
        if count:
            by_layer[path] = count
            total += count
    return ParamsCount(total, nonzero, by_layer)


def _effective(layer, weight):
    """The weight's value with its prune mask applied, if the layer has one."""
    value = np.asarray(weight.numpy() if hasattr(weight, "numpy") else weight)
    mask_name = getattr(layer, "prune_masks", {}).get(weight.name)
    if mask_name is not None:
        value = value * np.asarray(getattr(layer, mask_name).numpy())
    return value
