"""Where channel gates go: after each producer's normalisation, before its activation.

A gate scales a group's channels. It sits on the tensor right after the layer that
creates the channels, or after the BatchNormalization that directly follows it, so
`out = act(gate * BN(conv(x)))` as in Pruning from Scratch. A group with several
producers (channels tied by a residual addition) gets one gate layer called after every
producer, so each of its channels has a single gate value. A gate that follows a
BatchNorm of its own is computed inside it (`GatedBatchNormalization`), which is cheaper.
"""

import keras
import numpy as np

from keras_prune.graph.rules import PASSTHROUGH_LAYERS, SPATIAL_LAYERS
from keras_prune.graph.surgery import layer_from_config, rebuild
from keras_prune.layers.gates import ChannelGate, GatedBatchNormalization

__all__ = ["GatePlacement", "gate_positions", "gate_values", "insert_gates", "linear_outputs"]

_NORMALISATION = (keras.layers.BatchNormalization,)
_PASS_THROUGH = (*SPATIAL_LAYERS, *PASSTHROUGH_LAYERS, keras.layers.Dropout, keras.layers.AlphaDropout)
"""Layers that pass channels through one by one (the channel rules'): a nonlinearity after them
still follows the gated channels (the rectifiers among them are caught first, as nonlinear)."""
_NONLINEAR = (keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU, keras.layers.PReLU, keras.layers.Softmax)


class GatePlacement(dict):
    """`{layer path: group id}`: the calls whose output each group's gate follows."""


def _consumers(trace):
    consumers = {}
    for call in trace.calls:
        for key in call.inputs:
            consumers.setdefault(key, []).append(call)
    return consumers


def _aligned(graph, key, group):
    """Whether tensor `key` carries exactly `group`'s channels, in group order."""
    ids = graph.tensor_channels.get(key)
    if ids is None or len(ids) != group.size:
        return False
    channels = graph.channels_of(ids)
    return all(g is group for g, _ in channels) and [c for _, c in channels] == list(range(group.size))


def gate_positions(graph, groups):
    """Decides where each group's gate goes.

    Returns:
        `(placement, skipped)`: a `GatePlacement`, and `{group id: reason}` for groups
        whose channels never appear whole and in order right after a producer (they are
        left ungated, hence unpruned).
    """
    consumers = _consumers(graph.trace)
    calls_of = {}
    for call in graph.trace.calls:
        calls_of.setdefault(call.path, []).append(call)
    placement, skipped = GatePlacement(), {}
    for group in groups:
        positions = []
        for producer in group.producers:
            for call in calls_of.get(producer, []):
                key = call.outputs[0]
                after = consumers.get(key, [])
                if len(after) == 1 and isinstance(after[0].op, _NORMALISATION):
                    call, key = after[0], after[0].outputs[0]
                if not _aligned(graph, key, group):
                    positions = None
                    break
                positions.append(call.path)
            if positions is None:
                break
        if positions:
            for path in positions:
                placement[path] = group.id
        else:
            skipped[group.id] = "its channels are not the whole output of one producer"
    return placement, skipped


def _nonlinear(layer):
    if isinstance(layer, _NONLINEAR):
        return True
    activation = getattr(layer, "activation", None)  # an Activation layer, or one built into a conv
    return activation is not None and activation is not keras.activations.linear


def linear_outputs(graph, placement, groups):
    """`{group id: reason}` of the placed groups with one producer whose channels reach no
    nonlinearity: a linear bottleneck's projection (MobileNetV2's first and last block outputs,
    which no residual addition ties). Pruning from Scratch gates channels between a BatchNorm and
    its activation, and leaves block outputs whole, like the residual stream they belong to.
    """
    consumers = _consumers(graph.trace)
    calls = {call.path: call for call in graph.trace.calls}
    positions = {}
    for path, group_id in placement.items():
        positions.setdefault(group_id, []).append(path)
    linear = {}
    for group in groups:
        paths = positions.get(group.id, [])
        if len(group.producers) != 1 or len(paths) != 1:
            continue
        producer = calls.get(group.producers[0])
        if producer is not None and _nonlinear(producer.op):
            continue
        frontier, seen, reached = [calls[paths[0]].outputs[0]], set(), False
        while frontier and not reached:
            key = frontier.pop()
            for call in consumers.get(key, []):
                if _nonlinear(call.op):
                    reached = True
                elif isinstance(call.op, _PASS_THROUGH) and call.outputs and call.outputs[0] not in seen:
                    seen.add(call.outputs[0])
                    frontier.append(call.outputs[0])
        if not reached:
            linear[group.id] = "a linear projection: no activation follows it (a block output; --prune_residual gates it)"
    return linear


def _fusable(graph, placement):
    """`{layer path: group id}` of the placed calls whose gate can live inside the BatchNormalization.

    That is a plain BatchNormalization (scaled, no renormalisation, last axis) called once,
    and the only position of its group's gate: a gate shared by several producers
    (`prune_residual`'s tied groups) stays one `ChannelGate` layer, so its channels keep one value.
    """
    positions = {}
    for path, group_id in placement.items():
        positions.setdefault(group_id, []).append(path)
    calls_of_op = graph.trace.calls_per_op
    fused = {}
    for call in graph.trace.calls:
        layer, group_id = call.op, placement.get(call.path)
        if group_id is None or len(positions[group_id]) != 1:
            continue
        rank = len(graph.trace.shapes[call.inputs[0]])
        if (
            type(layer) is keras.layers.BatchNormalization
            and layer.scale
            and not layer.renorm
            and layer.axis in (-1, rank - 1)
            and calls_of_op.get(id(layer)) == 1
        ):
            fused[call.path] = group_id
    return fused


def insert_gates(graph, placement, *, initial_value=1.0, name=None, fuse=True):
    """A copy of `graph`'s model (same weights) with a gate on every placed call's output.

    With `fuse`, a gate that follows a BatchNormalization of its own is built into it (the
    BatchNormalization becomes a `GatedBatchNormalization`, which trains faster); every other
    gate is a `ChannelGate` layer called after its positions. Either way, the model computes
    `gate * output` there, and `gates[group id].gate` is the gate variable.

    Returns:
        `(gated_model, gates)` with `gates` mapping each group id to the layer holding its gate.
    """
    fused = _fusable(graph, placement) if fuse else {}
    gates = {}
    for group_id in dict.fromkeys(placement.values()):
        if group_id not in fused.values():
            safe = group_id.replace("/", "_")
            gates[group_id] = ChannelGate(initial_value, name=f"{safe}_gate")

    def layer_for(path, layer, config):
        if path not in fused:
            return layer_from_config(layer, config)
        gated = GatedBatchNormalization.from_config({**config, "initial_gate": initial_value})
        gates[fused[path]] = gated
        return gated

    def weights_for(path, old, new):
        values = {w.name: w.numpy() for w in old.weights}
        if path in fused:
            values["gate"] = np.full(new.gate.shape, initial_value, "float32")
        return values

    def after_call(call, outputs):
        group_id = placement.get(call.path)
        if group_id is None or call.path in fused:
            return outputs
        return [gates[group_id](outputs[0]), *outputs[1:]]

    model = rebuild(graph, layer_for=layer_for, weights_for=weights_for, after_call=after_call, name=name)
    return model, {group_id: gates[group_id] for group_id in dict.fromkeys(placement.values())}


def gate_values(gates):
    """`{group id: gate values}` as float64 arrays."""
    return {group_id: np.asarray(layer.gate.numpy(), dtype="float64") for group_id, layer in gates.items()}
