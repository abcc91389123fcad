"""Channel rules: how each layer type relates the channels of its inputs and outputs.

A rule answers, for one call of a layer, three questions: which output channels are
the same channels as which input channels (or new ones the layer creates), which weight
axes shrink with them, and which config field records the new size. Rules are looked
up along the layer's class hierarchy, so a subclass of `Conv2D` is treated as a
`Conv2D`, provided it has no weights the rule does not know (then it is frozen).

Custom layers opt in with `register_channel_rule`:

    @keras_prune.graph.register_channel_rule(MyScale)
    def _(ctx, call, layer, inputs, in_shapes, out_shapes):
        ctx.member(layer, "scale", 0, inputs[0])   # a per-channel weight
        return [inputs[0]]                          # channels pass through

`ctx` is the analysis context (`keras_prune.graph.dependency.RuleContext`); `inputs`
are per-input channel id arrays (None where a tensor has no channel axis); a rule
returns one array per output. A layer with no rule freezes every channel it touches.
"""

import math

import keras
import numpy as np
from keras import layers

__all__ = ["register_channel_rule", "find_rule", "passthrough", "unknown"]

_RULES = {}


def register_channel_rule(*layer_classes):
    """Decorator registering `fn(ctx, call, layer, inputs, in_shapes, out_shapes)`."""
    if not layer_classes:
        raise TypeError("register_channel_rule needs at least one layer class.")

    def decorator(fn):
        for cls in layer_classes:
            _RULES[cls] = fn
        return fn

    return decorator


def find_rule(op):
    """The rule for `op`'s class or its nearest registered base class, or None."""
    for cls in type(op).__mro__:
        if cls in _RULES:
            return _RULES[cls]
    return None


def unknown(ctx, call, layer, inputs, in_shapes, out_shapes, reason=None):
    """Freezes every input channel and gives the outputs new, frozen channels."""
    reason = reason or f"no channel rule for {type(layer).__name__}"
    for arr in inputs:
        if arr is not None:
            ctx.freeze(arr, layer, reason)
    tags = ["out"] if len(out_shapes) == 1 else [f"out{i}" for i in range(len(out_shapes))]
    return [ctx.new(layer, _last(s), tag=t, frozen=reason) for t, s in zip(tags, out_shapes)]


def passthrough(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Channels pass through unchanged: activations, dropout, pooling, padding, ..."""
    if len(out_shapes) != 1 or inputs[0] is None or _last(out_shapes[0]) != len(inputs[0]):
        return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, "channel count changes")
    return [inputs[0]]


def _last(shape):
    """Size of the channel (last) axis, or None for tensors without one."""
    if shape is None or len(shape) < 2 or shape[-1] is None:
        return None
    return int(shape[-1])


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") in ("channels_last", None)


def _weights_known(layer, known):
    """True if every weight of `layer` is named in `known` or declared channel-free."""
    allowed = set(known) | set(getattr(layer, "channel_free_weights", ()))
    for name in known:
        allowed |= set(_aliases(layer, name))
    return all(w.name in allowed for w in getattr(layer, "weights", ()))


def _aliases(layer, name):
    """Weights that share `name`'s shape and axes: its prune mask, if it has one."""
    mask = getattr(layer, "prune_masks", {}).get(name)
    return (mask,) if mask else ()


def _members(ctx, layer, name, axis, arr):
    ctx.member(layer, name, axis, arr)
    for alias in _aliases(layer, name):
        ctx.member(layer, alias, axis, arr)


def _guard(ctx, call, layer, inputs, in_shapes, out_shapes, known):
    """Returns a freeze reason if the standard rule cannot apply, else None."""
    if not _channels_last(layer):
        return "channels_first layout"
    if any(arr is None for arr in inputs[:1]):
        return "input has no channel axis"
    if not _weights_known(layer, known):
        names = sorted(w.name for w in layer.weights)
        return f"unrecognised weights {names}"
    return None


def _weightless(rule):
    """For a rule of weightless layer types: a subclass that adds weights is frozen, since
    the rule cannot say which of their axes follow the channels."""

    def check(ctx, call, layer, inputs, in_shapes, out_shapes):
        if not _weights_known(layer, ()):
            names = sorted(w.name for w in layer.weights)
            return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, f"unrecognised weights {names}")
        return rule(ctx, call, layer, inputs, in_shapes, out_shapes)

    check.__doc__ = rule.__doc__
    return check


_ELEMENTWISE_ACTIVATIONS = frozenset({
    "celu", "elu", "exponential", "gelu", "hard_shrink", "hard_sigmoid", "hard_silu", "hard_swish", "hard_tanh",
    "leaky_relu", "linear", "log_sigmoid", "mish", "relu", "relu6", "selu", "sigmoid", "silu", "swish",
    "soft_shrink", "softplus", "softsign", "sparse_plus", "sparse_sigmoid", "squareplus", "tanh", "tanh_shrink",
    "threshold",
})
"""keras.activations that act on each channel alone; any other (softmax, log_softmax, sparsemax,
glu, an unnamed callable such as a layer) may mix channels, so the channels behind it are frozen."""
COUPLED = "softmax over channels (or another activation that may mix them)"


def _activation_name(layer):
    return getattr(getattr(layer, "activation", None), "__name__", None)


def _coupling_activation(layer):
    """Whether `layer`'s `activation` may mix channels (softmax): removing one could change the rest."""
    if getattr(layer, "activation", None) is None:
        return False
    return _activation_name(layer) not in _ELEMENTWISE_ACTIVATIONS


def _new_outputs(ctx, layer, n):
    """Ids for the `n` output channels a conv or Dense creates; frozen behind a softmax activation."""
    return ctx.new(layer, n, frozen=COUPLED if _coupling_activation(layer) else None)


def _with_guard(known):
    def wrap(rule):
        def guarded(ctx, call, layer, inputs, in_shapes, out_shapes):
            reason = _guard(ctx, call, layer, inputs, in_shapes, out_shapes, known)
            if reason is None:
                reason = rule(ctx, call, layer, inputs, in_shapes, out_shapes)
                if not isinstance(reason, str):
                    return reason
            return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, reason)

        guarded.__doc__ = rule.__doc__
        return guarded

    return wrap


def _set(key):
    """Config updater: sets `config[key]` to the surviving channel count."""

    def update(config, kept):
        config[key] = kept
        return config

    return update


@register_channel_rule(layers.Conv1D, layers.Conv2D, layers.Conv3D)
@_with_guard(("kernel", "bias"))
def _conv(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Kernel (..., C_in, C_out): inputs on axis -2, new output channels on -1."""
    if layer.groups != 1:
        return "grouped convolution"
    out = _new_outputs(ctx, layer, layer.filters)
    _members(ctx, layer, "kernel", -2, inputs[0])
    _members(ctx, layer, "kernel", -1, out)
    _members(ctx, layer, "bias", 0, out)
    ctx.resize(layer, out, _set("filters"))
    return [out]


@register_channel_rule(layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
@_with_guard(("kernel", "bias"))
def _conv_transpose(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Kernel (..., C_out, C_in): the transpose of a convolution's layout."""
    out = _new_outputs(ctx, layer, layer.filters)
    _members(ctx, layer, "kernel", -1, inputs[0])
    _members(ctx, layer, "kernel", -2, out)
    _members(ctx, layer, "bias", 0, out)
    ctx.resize(layer, out, _set("filters"))
    return [out]


@register_channel_rule(layers.DepthwiseConv1D, layers.DepthwiseConv2D)
@_with_guard(("kernel", "bias"))
def _depthwise(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Output channel c*m+j comes from input channel c alone: they go together."""
    out = np.repeat(inputs[0], layer.depth_multiplier)
    if _coupling_activation(layer):
        ctx.freeze(out, layer, COUPLED)
    _members(ctx, layer, "kernel", -2, inputs[0])
    _members(ctx, layer, "bias", 0, out)
    return [out]


@register_channel_rule(layers.SeparableConv1D, layers.SeparableConv2D)
@_with_guard(("depthwise_kernel", "pointwise_kernel", "bias"))
def _separable(ctx, call, layer, inputs, in_shapes, out_shapes):
    """A depthwise step that follows its input, then a pointwise conv with new outputs."""
    middle = np.repeat(inputs[0], layer.depth_multiplier)
    out = _new_outputs(ctx, layer, layer.filters)
    _members(ctx, layer, "depthwise_kernel", -2, inputs[0])
    _members(ctx, layer, "pointwise_kernel", -2, middle)
    _members(ctx, layer, "pointwise_kernel", -1, out)
    _members(ctx, layer, "bias", 0, out)
    ctx.resize(layer, out, _set("filters"))
    return [out]


@register_channel_rule(layers.Dense)
@_with_guard(("kernel", "bias"))
def _dense(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Kernel (in, out) applied to the last axis."""
    out = _new_outputs(ctx, layer, layer.units)
    _members(ctx, layer, "kernel", 0, inputs[0])
    _members(ctx, layer, "kernel", 1, out)
    _members(ctx, layer, "bias", 0, out)
    ctx.resize(layer, out, _set("units"))
    return [out]


_BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")


def _batch_norm_channels(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Per-channel statistics and affine parameters shrink with the channels."""
    rank = len(in_shapes[0])
    if layer.axis not in (-1, rank - 1):
        return "normalises an axis other than the last"
    for w in layer.weights:
        ctx.member(layer, w.name, 0, inputs[0])
    return [inputs[0]]


def batch_norm_rule(*extra_weights):
    """The BatchNormalization rule for a subclass whose extra weights (`extra_weights`, by
    name) are also one value per channel."""
    return _with_guard((*_BN_WEIGHTS, *extra_weights))(_batch_norm_channels)


register_channel_rule(layers.BatchNormalization)(batch_norm_rule())


@register_channel_rule(layers.LayerNormalization)
@_with_guard(("gamma", "beta"))
def _layer_norm(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Statistics over the channel axis couple every channel: removing one changes the rest."""
    rank = len(in_shapes[0])
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    if any(a % rank == rank - 1 for a in axes):
        return "normalisation statistics span the channel axis"
    return [inputs[0]]


@register_channel_rule(layers.GroupNormalization)
@_with_guard(("gamma", "beta"))
def _group_norm(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Only one-channel groups (instance norm) keep channels independent."""
    channels = len(inputs[0])
    if layer.axis not in (-1, len(in_shapes[0]) - 1) or layer.groups not in (-1, channels):
        return "group statistics span several channels"
    for w in layer.weights:
        ctx.member(layer, w.name, 0, inputs[0])
    if layer.groups == channels:
        ctx.resize(layer, inputs[0], _set("groups"))
    return [inputs[0]]


@register_channel_rule(layers.PReLU)
@_with_guard(("alpha",))
def _prelu(ctx, call, layer, inputs, in_shapes, out_shapes):
    """A per-channel slope shrinks with the channels unless it is shared across them."""
    if layer.alpha.shape[-1] == len(inputs[0]) and len(inputs[0]) > 1:
        ctx.member(layer, "alpha", -1, inputs[0])
    return [inputs[0]]


_ELEMENTWISE = (
    layers.Add,
    layers.Subtract,
    layers.Multiply,
    layers.Average,
    layers.Maximum,
    layers.Minimum,
)


def _elementwise(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Inputs are added channel by channel, so their channels are the same channels.

    An input whose channel axis has size 1 is broadcast (a spatial attention map): it
    is not coupled, and it stays one channel wide (frozen: widening it would break the op).
    """
    width = _last(out_shapes[0])
    coupled = [a for a in inputs if a is not None and len(a) == width]
    if not coupled or any(a is None or len(a) not in (1, width) for a in inputs):
        return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, "unaligned inputs")
    for other in coupled[1:]:
        ctx.union(coupled[0], other)
    for broadcast in (a for a in inputs if len(a) != width):
        ctx.freeze(broadcast, layer, "broadcast across the channels")
    return [coupled[0]]


register_channel_rule(*_ELEMENTWISE)(_weightless(_elementwise))


def _scalar_operands_only(call):
    """True when every operand of `call` that is not a tensor is a scalar (`x + 3.0`).

    The operands are the call's arguments and the constants the operation keeps on itself:
    `keras.ops.clip(x, low, high)` records `Clip(low, high)`, `leaky_relu` its slope.
    """
    arguments = getattr(call.node, "arguments", None)
    if arguments is None:
        return False
    held = [v for k, v in vars(call.op).items() if not k.startswith("_") and k != "name"]  # as given: a list is one
    values = keras.tree.flatten((arguments.args, arguments.kwargs)) + held
    return all(np.size(v) == 1 for v in values if not isinstance(v, keras.KerasTensor))


_OP_NAMES = {
    "numpy": ("Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Absolute",
              "Negative", "Exp", "Sqrt", "Square", "Tanh", "Sign", "Clip"),
    "nn": ("Relu", "Relu6", "Sigmoid", "HardSigmoid", "HardSilu", "Silu", "Gelu", "Elu", "Selu", "LeakyRelu",
           "Softplus", "Softsign"),
}


def _keras_op_elementwise():
    """The `keras.ops` operations that act channel by channel. Functional models record
    `x + 3.0`, `x * y` or `keras.ops.relu6(x)` as these, not as layers (MobileNetV3's
    hard-swish is one)."""
    from keras.src.ops import nn, numpy

    modules = {"numpy": numpy, "nn": nn}
    return tuple(getattr(modules[m], n) for m, names in _OP_NAMES.items() for n in names if hasattr(modules[m], n))


@register_channel_rule(*_keras_op_elementwise())
def _op_arithmetic(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Elementwise like `layers.Add` when the other operands are scalars or tensors; a
    constant array operand (e.g. a per-channel bias) would have to shrink too: frozen."""
    if not _scalar_operands_only(call):
        return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, f"array constant in {type(layer).__name__}")
    return _elementwise(ctx, call, layer, inputs, in_shapes, out_shapes)


@register_channel_rule(layers.Concatenate)
@_weightless
def _concatenate(ctx, call, layer, inputs, in_shapes, out_shapes):
    """On the channel axis: offsets; on any other axis: the inputs' channels coincide."""
    if any(a is None for a in inputs):
        return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, "input without channels")
    rank = len(out_shapes[0])
    if layer.axis in (-1, rank - 1):
        return [np.concatenate(inputs)]
    return _elementwise(ctx, call, layer, inputs, in_shapes, out_shapes)


@register_channel_rule(layers.Flatten)
@_weightless
def _flatten(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Channels-last flattening repeats the channel pattern once per spatial position."""
    if inputs[0] is None or not _channels_last(layer) or None in in_shapes[0][1:-1]:
        return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, "unknown spatial size")
    repeats = math.prod(in_shapes[0][1:-1])
    return [np.tile(inputs[0], repeats)]


@register_channel_rule(layers.Reshape)
@_weightless
def _reshape(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Keeping the channel axis last passes channels through; flattening tiles them."""
    arr = inputs[0]
    in_shape, out_shape = in_shapes[0], out_shapes[0]
    if arr is None or None in in_shape[1:] or None in out_shape[1:]:
        return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, "dynamic reshape")
    channels = len(arr)
    if out_shape[-1] == channels:

        def keep_last(config, kept):
            config["target_shape"] = (*config["target_shape"][:-1], kept)
            return config

        ctx.resize(layer, arr, keep_last)
        return [arr]
    if len(out_shape) == 2:
        repeats = math.prod(in_shape[1:-1])

        def flat(config, kept):
            config["target_shape"] = (repeats * kept,)
            return config

        ctx.resize(layer, arr, flat)
        return [np.tile(arr, repeats)]
    return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, "reshape moves channels")


@register_channel_rule(layers.Softmax)
@_weightless
def _softmax(ctx, call, layer, inputs, in_shapes, out_shapes):
    """A softmax over the channel axis couples every channel; over other axes it does not."""
    rank = len(in_shapes[0])
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    if any(a % rank == rank - 1 for a in axes):
        return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, "softmax over channels")
    return passthrough(ctx, call, layer, inputs, in_shapes, out_shapes)


@register_channel_rule(layers.Rescaling)
@_weightless
def _rescaling(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Scalar rescaling passes channels through; per-channel constants would not shrink."""
    if np.ndim(layer.scale) or np.ndim(layer.offset):
        return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, "per-channel rescaling")
    return passthrough(ctx, call, layer, inputs, in_shapes, out_shapes)


@register_channel_rule(layers.Permute)
@_weightless
def _permute(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Permutations that keep the channel axis last pass channels through."""
    if tuple(layer.dims)[-1] != len(in_shapes[0]) - 1:
        return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, "permute moves channels")
    return passthrough(ctx, call, layer, inputs, in_shapes, out_shapes)


def _spatial(rule):
    """Pass-through for layers with a data_format: only channels-last is understood."""

    def check(ctx, call, layer, inputs, in_shapes, out_shapes):
        if not _channels_last(layer):
            return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, "channels_first layout")
        return rule(ctx, call, layer, inputs, in_shapes, out_shapes)

    return check


@register_channel_rule(layers.Activation)
@_weightless
def _activation(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Activations act channel by channel, except a softmax, which normalises across them."""
    if _coupling_activation(layer):
        return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, COUPLED)
    return passthrough(ctx, call, layer, inputs, in_shapes, out_shapes)


@register_channel_rule(layers.Dropout, layers.AlphaDropout)
@_weightless
def _dropout(ctx, call, layer, inputs, in_shapes, out_shapes):
    """Dropout passes channels through; a `noise_shape` that names the channel count shrinks with them."""
    noise = layer.noise_shape
    if inputs[0] is not None and noise is not None and noise[-1] not in (None, 1):

        def resize_noise(config, kept):
            config["noise_shape"] = (*config["noise_shape"][:-1], kept)
            return config

        ctx.resize(layer, inputs[0], resize_noise)
    return passthrough(ctx, call, layer, inputs, in_shapes, out_shapes)


PASSTHROUGH_LAYERS = (
    layers.ReLU,
    layers.LeakyReLU,
    layers.ELU,
    layers.SpatialDropout1D,
    layers.SpatialDropout2D,
    layers.SpatialDropout3D,
    layers.GaussianNoise,
    layers.GaussianDropout,
    layers.ActivityRegularization,
    layers.Identity,
)
SPATIAL_LAYERS = (
    layers.MaxPooling1D,
    layers.MaxPooling2D,
    layers.MaxPooling3D,
    layers.AveragePooling1D,
    layers.AveragePooling2D,
    layers.AveragePooling3D,
    layers.GlobalAveragePooling1D,
    layers.GlobalAveragePooling2D,
    layers.GlobalAveragePooling3D,
    layers.GlobalMaxPooling1D,
    layers.GlobalMaxPooling2D,
    layers.GlobalMaxPooling3D,
    layers.ZeroPadding1D,
    layers.ZeroPadding2D,
    layers.ZeroPadding3D,
    layers.Cropping1D,
    layers.Cropping2D,
    layers.Cropping3D,
    layers.UpSampling1D,
    layers.UpSampling2D,
    layers.UpSampling3D,
    layers.Resizing,
)
register_channel_rule(*PASSTHROUGH_LAYERS)(_weightless(passthrough))
register_channel_rule(*SPATIAL_LAYERS)(_weightless(_spatial(passthrough)))
