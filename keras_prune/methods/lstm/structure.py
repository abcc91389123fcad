"""The search space: a structure is the channel count of every prunable group.

Every candidate descends from the pre-trained network by removing channels, so its
FLOPs and its layer descriptors follow from its counts alone, measured on the original
graph; no candidate has to be loaded to be described.
"""

import math

import keras
import numpy as np

from keras_prune.errors import PruneError
from keras_prune.graph import count_flops
from keras_prune.methods.budget import check_round_to, round_count
from keras_prune.methods.lstm.controller import PRUNE
from keras_prune.methods.l1 import select_groups

__all__ = ["DESCRIPTOR_FEATURES", "StructureSpace", "structure_key"]

DESCRIPTOR_FEATURES = (
    "position",
    "kernel_size",
    "stride",
    "kept_fraction",
    "original_width",
    "flops_share",
    "flops_saved_if_pruned",
    "is_dense",
    "can_prune",
)
"""What the controller reads about each group, in this order (all scaled to about [0, 1])."""


def structure_key(counts):
    """A structure's cache key: its channel counts joined by '-'."""
    return "-".join(str(int(c)) for c in counts)


def _producer_shape(layer):
    """(kernel positions, stride) of the layer creating a group's channels (Dense: 1, 1)."""
    kernel = getattr(layer, "kernel_size", None) or (1,)
    strides = getattr(layer, "strides", None) or (1,)
    return math.prod(kernel), max(strides)


class StructureSpace:
    """The prunable groups of the pre-trained network and what the controller sees of them.

    Args:
        graph: `analyze(model)` of the pre-trained network.
        prune_rate: fraction of current channels one "prune" decision removes.
        prune_residual: also decide on groups tied by residual additions (default: only
            the channels inside residual blocks, the usual ResNet rule). A tied group that
            several layers each make a part of (`ChannelGraph.segments`: a concatenation joined
            by Add) stays whole: a structure is a channel count per group, and such a group
            cannot take every count (each part keeps a channel).
        round_to: counts stay multiples of this (or the whole group); a "prune" then
            goes to the allowed count nearest its rate, and at least one step down.

    Raises:
        PruneError: if fewer than two groups can be pruned (nothing for a policy over
            layers to choose between).
    """

    def __init__(self, graph, *, prune_rate, prune_residual=False, round_to=1):
        self.graph = graph
        self.prune_rate = float(prune_rate)
        self.round_to = check_round_to(round_to)
        self.groups = [g for g in select_groups(graph, prune_residual=prune_residual) if g.id not in graph.segments]
        if len(self.groups) < 2:
            searchable = [g for g in select_groups(graph, prune_residual=True) if g.id not in graph.segments]
            tied = 0 if prune_residual else len(searchable) - len(self.groups)
            hint = (
                f"; {tied} more are tied by residual additions: pass --prune_residual to search them"
                if tied
                else "; see keras_prune.graph.analyze(model).frozen_layers for what is frozen and why"
            )
            raise PruneError(
                "lstm decides layer by layer where to prune, so it needs at least two prunable channel "
                f"groups. Received: model {graph.model.name!r} with {len(self.groups)} "
                f"({[g.id for g in self.groups]}){hint}."
            )
        self.original = tuple(g.size for g in self.groups)
        self.full_flops = count_flops(graph.model, graph=graph).total
        shapes = []
        for group in self.groups:
            layer = graph.layers[group.producers[0]]
            shapes.append((*_producer_shape(layer), isinstance(layer, keras.layers.Dense)))
        self._shapes = shapes
        self._max_kernel = max(s[0] for s in shapes)
        self._max_stride = max(s[1] for s in shapes)
        self._max_width = max(self.original)

    @property
    def ids(self):
        return [g.id for g in self.groups]

    @property
    def smallest(self):
        """The counts as far as prune decisions can go: one channel per group, or `round_to` (or whole)."""
        return tuple(round_count(1, size, self.round_to) for size in self.original)

    def keep(self, counts):
        """`{group id: range}` for the FLOPs count of a structure (which channels does not matter)."""
        return {g.id: np.arange(int(c)) for g, c in zip(self.groups, counts) if int(c) < g.size}

    def flops(self, counts):
        return count_flops(self.graph.model, self.keep(counts), graph=self.graph)

    def flops_ratio(self, counts):
        """FLOPs of the structure as a fraction of the pre-trained network's."""
        return self.flops(counts).total / self.full_flops

    def pruned_count(self, count, size):
        """Channels left after one "prune" decision on a group of `size` that has `count`.

        `ceil(prune_rate * count)` go (at least one channel stays); with `round_to`, the
        allowed count nearest that, or the next allowed one down if that is no cut.
        """
        count = int(count)
        wanted = max(1, count - math.ceil(self.prune_rate * count))
        if self.round_to == 1:
            return wanted
        rounded = round_count(wanted, size, self.round_to)
        if rounded < count:
            return rounded
        return (count - 1) // self.round_to * self.round_to if count > self.round_to else count

    def child(self, counts, actions):
        """The counts after applying one decision per group."""
        return tuple(
            self.pruned_count(c, g.size) if a == PRUNE else int(c) for c, g, a in zip(counts, self.groups, actions)
        )

    def descriptors(self, counts):
        """`[L, len(DESCRIPTOR_FEATURES)]` float32: one row per group, in model order."""
        flops = self.flops(counts)
        total = max(flops.total, 1)
        rows = []
        last = max(len(self.groups) - 1, 1)
        for i, (group, count) in enumerate(zip(self.groups, counts)):
            kernel, stride, dense = self._shapes[i]
            pruned = list(counts)
            pruned[i] = self.pruned_count(count, group.size)
            saved = (total - self.flops(pruned).total) / total
            own = sum(flops.by_layer.get(p, 0) for p in group.producers) / total
            rows.append(
                [
                    i / last,
                    kernel / self._max_kernel,
                    stride / self._max_stride,
                    count / group.size,
                    group.size / self._max_width,
                    own,
                    saved,
                    float(dense),
                    float(self.pruned_count(count, group.size) < count),
                ]
            )
        return np.asarray(rows, "float32")
