"""Fold BatchNormalization into the convolution or Dense layer before it, for inference.

y = gamma * (W x + b - mean) / sqrt(var + eps) + beta is again a linear layer, so the
BN layer disappears and the exported model runs fewer ops. Exact up to float rounding,
in inference mode only (training would need the batch statistics back).
"""

import numpy as np
from keras import layers

from keras_prune.graph.dependency import analyze
from keras_prune.graph.surgery import layer_from_config, rebuild
from keras_prune.layers.gates import GatedBatchNormalization

__all__ = ["fold_batch_norms"]

_FOLDABLE = (layers.Conv1D, layers.Conv2D, layers.Conv3D, layers.Dense, layers.DepthwiseConv1D, layers.DepthwiseConv2D)


def _foldable_pairs(graph):
    """{bn path: producer path} for each BN fed only by a linear, channels-last layer."""
    made_by, uses, calls = graph.trace.made_by, graph.trace.uses, graph.trace.calls_per_op
    pairs = {}
    for call in graph.trace.calls:
        bn = call.op
        if not isinstance(bn, layers.BatchNormalization) or calls[id(bn)] != 1:
            continue
        source = made_by.get(call.inputs[0])
        op = getattr(source, "op", None)
        if (
            isinstance(op, _FOLDABLE)
            and type(op) in _FOLDABLE
            and calls[id(op)] == 1
            and uses[call.inputs[0]] == 1
            and getattr(op, "activation", None).__name__ == "linear"
            and getattr(op, "data_format", "channels_last") == "channels_last"
            and getattr(op, "groups", 1) == 1
            and bn.axis in (-1, len(graph.trace.shapes[call.inputs[0]]) - 1)
        ):
            pairs[call.path] = source.path
    return pairs


def _folded(op, bn):
    if isinstance(bn, GatedBatchNormalization):
        values = bn.batch_norm_weights("float64")
    else:
        values = {w.name: np.asarray(w.numpy(), dtype="float64") for w in bn.weights}
    channels = values["moving_mean"].shape[0]
    gamma = values.get("gamma", np.ones(channels))
    beta = values.get("beta", np.zeros(channels))
    scale = gamma / np.sqrt(values["moving_variance"] + bn.epsilon)
    kernel = np.asarray(op.kernel.numpy(), dtype="float64")
    bias = np.asarray(op.bias.numpy(), dtype="float64") if op.use_bias else np.zeros(channels)
    if isinstance(op, (layers.DepthwiseConv1D, layers.DepthwiseConv2D)):
        kernel = kernel * scale.reshape(kernel.shape[-2], kernel.shape[-1])
    else:
        kernel = kernel * scale
    bias = (bias - values["moving_mean"]) * scale + beta
    dtype = op.kernel.dtype
    return {"kernel": kernel.astype(dtype), "bias": bias.astype(dtype)}


def fold_batch_norms(model):
    """Returns an inference-only copy of `model` with BN folded where it can be, or `model`
    itself when no BN can be folded (a copy would only double the memory of, e.g., ConvNeXt,
    whose LayerNorms do not fold)."""
    graph = analyze(model)
    pairs = _foldable_pairs(graph)
    if not pairs:
        return model
    producers = {p: bn for bn, p in pairs.items()}

    def config_for(path, layer, config):
        if path in producers:
            config["use_bias"] = True
        return config

    def layer_for(path, layer, config):
        if path in pairs:
            return None
        return layer_from_config(layer, config)

    def weights_for(path, old, new):
        if path in producers:
            return _folded(old, graph.layers[producers[path]])
        return {w.name: w.numpy() for w in old.weights}

    return rebuild(graph, config_for=config_for, layer_for=layer_for, weights_for=weights_for)
