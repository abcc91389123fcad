"""Weight-norm importance of channels: the L1 norm of the filters that produce them."""

import keras
import numpy as np

__all__ = ["filter_norms"]

_PRODUCING_WEIGHTS = ("kernel", "pointwise_kernel")
_TRANSPOSED = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)


def filter_norms(graph, group, *, order=1):
    """Per-channel norm of the weights that produce `group`'s channels.

    Sums, over every layer that creates the group's channels (several for a residual
    group), the L`order` norm of each output filter.
    """
    scores = np.zeros(group.size)
    for member in group.members:
        if member.layer not in group.producers or member.weight not in _PRODUCING_WEIGHTS:
            continue
        layer = graph.layers[member.layer]
        weight = next(w for w in layer.weights if w.name == member.weight)
        value = np.asarray(weight.numpy(), dtype="float64")
        axis = member.axis % value.ndim
        # The filters' output axis: last, but for a transposed conv's (..., out, in) kernel.
        if axis != value.ndim - (2 if isinstance(layer, _TRANSPOSED) else 1):
            continue
        other = tuple(a for a in range(value.ndim) if a != axis)
        per_position = (np.abs(value) ** order).sum(axis=other)
        valid = member.index_map >= 0
        np.add.at(scores, member.index_map[valid], per_position[valid])
    return scores ** (1.0 / order)
