"""Surgery: build a new, physically smaller model without the removed channels.

The new model is a flat functional model (nested models are inlined, layer names are
kept) whose layers are rebuilt from their configs with the new channel counts and
given the surviving slices of the original weights.
"""

import functools

import keras
import numpy as np

from keras_prune.graph.dependency import analyze
from keras_prune.graph.trace import replay
from keras_prune.models._common import layer_seed

__all__ = [
    "expand_channels",
    "expanded_widths",
    "kept_slices",
    "layer_from_config",
    "masked_reference",
    "prune_channels",
    "rebuild",
    "rebuilt_names",
    "reinitialize",
    "resized_config",
    "sliced_weights",
]


def _unique_namer(reserved=()):
    used = set(reserved)

    def name_for(call):
        base = call.op.name if not call.scope else "_".join([*call.scope, call.op.name])
        name = call.op.name if call.op.name not in used else base
        suffix = 1
        while name in used:
            name, suffix = f"{base}_{suffix}", suffix + 1
        used.add(name)
        return name

    return name_for


def rebuilt_names(trace):
    """`{call path: layer name}` that `rebuild` gives each layer of `trace`'s model.

    Nested models are inlined, and a layer keeps its name unless an earlier one took it, or
    the model's inputs or its `keras.ops` operations (which keep theirs) have it; then its
    nested models' names go in front (`block_conv`, then `block_conv_1`, ...). A layer called
    at several paths (a shared layer, a nested model called twice) is one layer.
    """
    kept = [t._keras_history.operation.name for t in trace.input_tensors]
    kept += [c.op.name for c in trace.calls if not isinstance(c.op, keras.layers.Layer)]
    name_for, named, names = _unique_namer(kept), {}, {}
    for call in trace.calls:
        if isinstance(call.op, keras.layers.Layer):
            if id(call.op) not in named:
                named[id(call.op)] = name_for(call)
            names[call.path] = named[id(call.op)]
    return names


def layer_from_config(layer, config, cls=None):
    """A new layer like `layer`, built as `cls.from_config(config)` (`cls`: `layer`'s class).

    Surgery rebuilds every layer, also those it leaves alone. A weightless layer whose config
    does not round-trip but is left unchanged (a `Lambda` of a Python lambda, which Keras' safe
    mode will not rebuild; a custom layer whose `__init__` takes no `**kwargs`) is used as it
    is: having no weights, it shares nothing with the original model.

    Raises:
        ValueError: naming the layer, if it cannot be rebuilt from `config`.
    """
    cls = cls or type(layer)
    try:
        return cls.from_config(config)
    except Exception as error:  # whatever the layer's own from_config raises
        if cls is type(layer) and not layer.weights and _unchanged(layer, config):
            return layer
        raise ValueError(
            f"Cannot rebuild layer {layer.name!r} ({type(layer).__name__}) from its config. Surgery "
            "rebuilds each layer as `from_config(get_config())`: make its config round-trip (an "
            f"`__init__` that accepts every key `get_config` returns, and `**kwargs`). The error: {error}"
        ) from error


def _unchanged(layer, config):
    """Whether `config` is `layer`'s own, under `layer`'s own name."""
    config = dict(config)
    if config.pop("name", layer.name) != layer.name:
        return False
    own = {k: v for k, v in layer.get_config().items() if k != "name"}
    try:
        return bool(config == own)
    except ValueError:  # arrays inside: no truth value
        return False


def rebuild(graph, *, config_for=None, layer_for=None, weights_for=None, after_call=None, name=None):
    """Rebuilds `graph`'s model layer by layer.

    Args:
        graph: a `ChannelGraph`.
        config_for: `fn(path, layer, config) -> config` to change a layer's config.
        layer_for: `fn(path, layer, config) -> layer or None` to build the new layer
            (None drops the layer: its first input passes through). Defaults to
            `layer_from_config(layer, config)`.
        weights_for: `fn(path, old_layer, new_layer) -> {weight name: array}`, or None
            to copy the old weights unchanged.
        after_call: passed to `trace.replay` (insert layers after a call).
        name: the new model's name.

    Returns:
        The new `keras.Model`.
    """
    new_ops = {}
    names = rebuilt_names(graph.trace)

    def make_op(call):
        if id(call.op) in new_ops:
            return new_ops[id(call.op)]
        op = call.op
        new = op
        if isinstance(op, keras.layers.Layer):
            config = op.get_config()
            config["name"] = names[call.path]
            if config_for is not None:
                config = config_for(call.path, op, config)
            new = layer_for(call.path, op, config) if layer_for else layer_from_config(op, config)
            if new is None:
                new = _first_input
        new_ops[id(op)] = new
        return new

    model = replay(graph.trace, make_op, after_call=after_call, name=name)
    if weights_for is _fresh_weights:  # the new layers keep what their initializers drew
        return model
    for path, layer in graph.layers.items():
        new = new_ops.get(id(layer))
        if new is None or new is layer or new is _first_input or not new.weights:
            continue
        if len({w.name for w in layer.weights}) < len(layer.weights):
            # Weights that share a name (Bidirectional's two LSTMs: kernel, recurrent_kernel,
            # bias twice) would all get the last one's values by name. No channel rule names
            # such a layer's weights, so nothing of it is cut: copy by position.
            new.set_weights([w.numpy() for w in layer.weights])
            continue
        if weights_for is None:
            values = {w.name: w.numpy() for w in layer.weights}
        else:
            values = weights_for(path, layer, new)
        new.set_weights(_in_order(values, layer, new))
    return model


def _in_order(values, old, new):
    """`values` (by the old layer's weight names) in the order of `new.weights`.

    Weights are matched by name; a layer that creates its weights without a name (e.g.
    ConvNeXt's LayerScale) gets a global counter's ("variable_36"), which differs between
    two instances of the layer: its weights then match by position.
    """
    names = [w.name for w in new.weights]
    if len(set(names)) == len(names) and all(n in values for n in names):
        return [values[n] for n in names]
    old_names = [w.name for w in old.weights]
    if len(old_names) == len(names) and all(n in values for n in old_names):
        return [values[n] for n in old_names]
    raise ValueError(
        f"Cannot match the weights of rebuilt layer {new.name!r} ({names}) to the original's "
        f"({old_names}). Give its weights names in `add_weight(name=...)`."
    )


def _first_input(*args, **kwargs):
    """Stands in for a dropped layer: its first input passes through."""
    return keras.tree.flatten(args)[0]


def kept_slices(graph, alive):
    """{(layer path, weight name): {axis: kept positions}} for every shrinking axis."""
    slices = {}
    for layer, weight, axis, ids in graph.raw_members:
        kept = alive[ids]
        axes = slices.setdefault((layer, weight), {})
        axes[axis] = kept if axis not in axes else axes[axis] & kept
    return slices


def resized_config(graph, alive):
    """A `config_for` for `rebuild` that writes each layer's surviving channel count."""

    def config_for(path, layer, config):
        if path in graph.resizes:
            ids, update = graph.resizes[path]
            config = update(config, int(alive[ids].sum()))
        return config

    return config_for


def sliced_weights(path, layer, slices, values=None):
    """{weight name: value} of `layer` with the removed positions cut out."""
    values = values or {w.name: np.asarray(w.numpy()) for w in layer.weights}
    result = {}
    for weight_name, value in values.items():
        for axis, kept in slices.get((path, weight_name), {}).items():
            value = np.compress(kept, value, axis=axis)
        result[weight_name] = value
    return result


def prune_channels(model, keep, *, graph=None, name=None, fresh=False):
    """Returns a new model with the channels not in `keep` physically removed.

    Args:
        model: a functional or Sequential Keras model.
        keep: `{group_id: indices}`: the channels each listed group keeps. Groups not
            listed keep every channel. Only prunable groups may lose channels, and every
            group keeps at least one.
        graph: an existing `analyze(model)` result, to avoid re-analysing.
        name: the new model's name (defaults to the original's).
        fresh: give every layer fresh weights from its initializer instead of the
            surviving ones: the pruned structure to train from scratch, as
            `reinitialize(prune_channels(...))` builds it, in one rebuild instead of two.

    Returns:
        A new `keras.Model` with the same inputs and output shapes, smaller layers, and
        the surviving weights copied (unless `fresh`). Keeping everything reproduces the
        model exactly (without `fresh`).
    """
    graph = graph or analyze(model)
    alive = graph.alive(keep)
    slices = kept_slices(graph, alive)

    def weights_for(path, old, new):
        return sliced_weights(path, old, slices)

    return rebuild(
        graph, config_for=resized_config(graph, alive), weights_for=_fresh_weights if fresh else weights_for, name=name
    )


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


def expand_channels(model, factor, *, graph=None, name=None, round_to=1):
    """The same architecture with every prunable group `factor` times as wide, freshly initialised.

    "Prunable" includes groups tied by residual additions (they widen together), so a
    CIFAR ResNet with widths 16/32/64 becomes 20/40/80 at `factor=1.25`; model inputs,
    outputs and frozen layers keep their width. Weights are drawn anew from each layer's
    initializer, because a wider layer has no "original" values to keep.

    Args:
        model: a functional or Sequential Keras model.
        factor: the width multiplier, in [1, 2]; each group gets `round(factor * size)`.
        graph: an existing `analyze(model)` result.
        name: the new model's name (defaults to the original's).
        round_to: each width goes to the multiple of this nearest `factor * size`
            between the original and twice it (ResNet widths 8/16/32 at 1.25x: 8/24/40
            with 8, not 10/20/40), so that the groups a method leaves unpruned, like a
            residual stream, keep a fast width; a group with no multiple in that range,
            or one the factor leaves as it is, keeps `round(factor * size)`.
    """
    graph = graph or analyze(model)
    copies = graph.copies(expanded_widths(graph, factor, round_to=round_to))

    def config_for(path, layer, config):
        if path in graph.resizes:
            ids, update = graph.resizes[path]
            config = update(config, int(copies[ids].sum()))
        return config

    return rebuild(graph, config_for=config_for, weights_for=_fresh_weights, name=name)


def expanded_widths(graph, factor, *, round_to=1):
    """`{group id: width}` of every prunable group of `graph` in `expand_channels(..., factor)`."""
    if not 1.0 <= factor <= 2.0:
        raise ValueError(f"The expansion factor must be in [1, 2]. Received: factor={factor}")
    return {g.id: _expanded_width(g.size, factor, round_to) for g in graph.prunable_groups}


def _expanded_width(size, factor, round_to):
    width = int(round(factor * size))
    multiples = range(-(-size // round_to) * round_to, 2 * size + 1, round_to)
    if round_to <= 1 or width == size or not multiples:
        return width
    return min(multiples, key=lambda m: (abs(m - factor * size), -m))


def reinitialize(model, *, name=None, seed=None):
    """The same architecture with fresh weights from each layer's initializer (train from scratch).

    Args:
        seed: None keeps every initializer as it is, seed included: a model whose initializers carry
            integer seeds (the zoo's, built with `seed=`) draws the very weights it was built with
            again. An integer reseeds every initializer that takes a seed, from it, the layer's name
            and the weight's role (`layer_seed`), so each seed gives its own reproducible draw: repeated
            trainings from scratch that really start apart.
    """
    config_for = None if seed is None else functools.partial(_reseeded_config, seed)
    return rebuild(analyze(model), config_for=config_for, weights_for=_fresh_weights, name=name)


def _reseeded_config(seed, path, layer, config):
    """A `config_for` that gives every initializer with a `seed` one derived from `seed`."""
    config = dict(config)
    for key, value in config.items():
        if key.endswith("_initializer") and isinstance(value, dict) and "seed" in value.get("config", {}):
            config[key] = {**value, "config": {**value["config"], "seed": layer_seed(seed, f"{layer.name}/{key}")}}
    return config


def _fresh_weights(path, old, new):
    """A `weights_for` that keeps the new layer's freshly initialised values (`rebuild` then
    copies nothing)."""
    return {w.name: w.numpy() for w in new.weights}
