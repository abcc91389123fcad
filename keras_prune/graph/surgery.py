"""Surgery: build a new, physically smaller model without the removed channels.

The new model is a flat functional model (nested models are inlined, layer names are
kept) whose layers are rebuilt from their configs with the new channel counts and
given the surviving slices of the original weights.
"""

import keras
import numpy as np

from keras_prune.graph.dependency import analyze

__all__ = ["prune_channels", "masked_reference", "rebuild"]


def _unique_namer():
    used = set()

    def name_for(call):
        base = call.op.name if not call.scope else "_".join([*call.scope, call.op.name])
        name = call.op.name if call.op.name not in used else base
        suffix = 1
        while name in used:
            name, suffix = f"{base}_{suffix}", suffix + 1
        used.add(name)
        return name

    return name_for


def rebuild(graph, *, config_for=None, weights_for=None, after_call=None, name=None):
    """Rebuilds `graph`'s model layer by layer.

    Args:
        graph: a `ChannelGraph`.
        config_for: `fn(path, layer, config) -> config` to change a layer's config.
        weights_for: `fn(path, old_layer, new_layer) -> list of arrays`, or None to
            copy the old weights unchanged.
        after_call: passed to `trace.replay` (insert layers after a call).
        name: the new model's name.

    Returns:
        The new `keras.Model`.
    """
    from keras_prune.graph.trace import replay

    new_ops = {}
    name_for = _unique_namer()

    def make_op(call):
        if id(call.op) in new_ops:
            return new_ops[id(call.op)][1]
        op = call.op
        if isinstance(op, keras.layers.Layer):
            config = op.get_config()
            config["name"] = name_for(call)
            if config_for is not None:
                config = config_for(call.path, op, config)
            new = type(op).from_config(config)
        else:
            new = op
        new_ops[id(op)] = (call.path, new)
        return new

    model = replay(graph.trace, make_op, after_call=after_call, name=name)
    for path, layer in graph.layers.items():
        if id(layer) not in new_ops or not getattr(layer, "weights", None):
            continue
        new = new_ops[id(layer)][1]
        if new is layer:
            continue
        values = weights_for(path, layer, new) if weights_for else layer.get_weights()
        new.set_weights(values)
    return model


def _kept_slices(graph, alive):
    """{(layer path, weight name): {axis: kept positions}} for every shrinking axis."""
    slices = {}
    for layer, weight, axis, ids in graph.raw_members:
        kept = alive[ids]
        axes = slices.setdefault((layer, weight), {})
        axes[axis] = kept if axis not in axes else axes[axis] & kept
    return slices


def prune_channels(model, keep, *, graph=None, name=None):
    """Returns a new model with the channels not in `keep` physically removed.

    Args:
        model: a functional or Sequential Keras model.
        keep: `{group_id: indices}`: the channels each listed group keeps. Groups not
            listed keep every channel. Only prunable groups may lose channels, and every
            group keeps at least one.
        graph: an existing `analyze(model)` result, to avoid re-analysing.
        name: the new model's name (defaults to the original's).

    Returns:
        A new `keras.Model` with the same inputs and output shapes, smaller layers, and
        the surviving weights copied. Keeping everything reproduces the model exactly.
    """
    graph = graph or analyze(model)
    alive = graph.alive(keep)
    slices = _kept_slices(graph, alive)

    def config_for(path, layer, config):
        if path in graph.resizes:
            ids, update = graph.resizes[path]
            config = update(config, int(alive[ids].sum()))
        return config

    def weights_for(path, old, new):
        values = []
        for w in old.weights:
            value = np.asarray(w.numpy())
            for axis, kept in slices.get((path, w.name), {}).items():
                value = np.compress(kept, value, axis=axis)
            values.append(value)
        return values

    return rebuild(graph, config_for=config_for, weights_for=weights_for, name=name)


def masked_reference(model, keep, *, graph=None):
    """The original model with the removed channels forced to zero wherever they flow.

    A `ChannelMask` follows every layer whose output carries a removed channel. Its
    outputs equal `prune_channels(model, keep)`'s: the test of exact surgery.
    """
    from keras_prune.layers.gates import ChannelMask

    graph = graph or analyze(model)
    alive = graph.alive(keep)

    def after_call(call, outputs):
        result = []
        for key, value in zip(call.outputs, outputs):
            ids = graph.tensor_channels.get(key)
            if ids is not None and not alive[ids].all():
                value = ChannelMask(alive[ids].astype("float32").tolist())(value)
            result.append(value)
        return result

    return rebuild(graph, after_call=after_call)
