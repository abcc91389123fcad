"""Where channel gates go: after each producer's normalisation, before its activation.

A gate scales a group's channels. It sits on the tensor right after the layer that
creates the channels, or after the BatchNormalization that directly follows it, so
`out = act(gate * BN(conv(x)))` as in Pruning from Scratch. A group with several
producers (channels tied by a residual addition) gets one gate layer called after every
producer, so each of its channels has a single gate value.
"""

import keras
import numpy as np

from keras_prune.graph.surgery import rebuild
from keras_prune.layers.gates import ChannelGate

__all__ = ["GatePlacement", "gate_positions", "gate_values", "insert_gates"]

_NORMALISATION = (keras.layers.BatchNormalization,)


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


def insert_gates(graph, placement, *, initial_value=1.0, name=None):
    """A copy of `graph`'s model (same weights) with a `ChannelGate` after every placed call.

    Returns:
        `(gated_model, gates)` with `gates` mapping each group id to its gate layer.
    """
    gates = {}
    for group_id in dict.fromkeys(placement.values()):
        safe = group_id.replace("/", "_")
        gates[group_id] = ChannelGate(initial_value, name=f"{safe}_gate")

    def after_call(call, outputs):
        group_id = placement.get(call.path)
        if group_id is None:
            return outputs
        return [gates[group_id](outputs[0]), *outputs[1:]]

    model = rebuild(graph, after_call=after_call, name=name)
    return model, gates


def gate_values(gates):
    """`{group id: gate values}` as float64 arrays."""
    return {group_id: np.asarray(layer.gate.numpy(), dtype="float64") for group_id, layer in gates.items()}
