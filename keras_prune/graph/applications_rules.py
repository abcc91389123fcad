"""Channel rules for the custom layers `keras.applications` builds its models with.

Without them InceptionResNetV2's residual scaling (`CustomScaleLayer`, x + scale * r)
and ConvNeXt's `LayerScale` (x * gamma, one gamma per channel) froze every channel they
touch. In the applications sweep, the share of InceptionResNetV2's channels in prunable
groups went from 23% to 99.96% with them, ConvNeXtTiny's from 54% to 62% (its
LayerNorms still freeze the residual stream). The classes live in Keras's private
modules, so a Keras without them only loses the rule.
"""

import numpy as np

from keras_prune.graph.rules import _elementwise, _set, register_channel_rule, unknown

__all__ = []


def _application_class(module, name):
    try:
        namespace = __import__(f"keras.src.applications.{module}", fromlist=[name])
    except ImportError:
        return None
    return getattr(namespace, name, None)


CUSTOM_SCALE = _application_class("inception_resnet_v2", "CustomScaleLayer")
LAYER_SCALE = _application_class("convnext", "LayerScale")


def _custom_scale(ctx, call, layer, inputs, in_shapes, out_shapes):
    """`inputs[0] + inputs[1] * scale` with a scalar scale: an elementwise sum, as `layers.Add`."""
    if np.ndim(layer.scale) or layer.weights:
        return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, "non-scalar residual scale")
    return _elementwise(ctx, call, layer, inputs, in_shapes, out_shapes)


def _layer_scale(ctx, call, layer, inputs, in_shapes, out_shapes):
    """`x * gamma` with one gamma per channel: gamma shrinks with the channels it scales.

    LayerScale creates gamma without a name, so it is found as the layer's only weight.
    """
    arr = inputs[0]
    weights = layer.weights
    if arr is None or len(weights) != 1 or tuple(weights[0].shape) != (len(arr),):
        return unknown(ctx, call, layer, inputs, in_shapes, out_shapes, "gamma does not match the channels")
    ctx.member(layer, weights[0].name, 0, arr)
    ctx.resize(layer, arr, _set("projection_dim"))
    return [arr]


if CUSTOM_SCALE is not None:
    register_channel_rule(CUSTOM_SCALE)(_custom_scale)
if LAYER_SCALE is not None:
    register_channel_rule(LAYER_SCALE)(_layer_scale)
