"""The channel-dependency graph: which channels of a model must be removed together.

Data model: every channel a layer creates gets an integer id; a tensor's channel axis is
an array of ids (a concatenation of its inputs' arrays, a tiling after Flatten, ...).
Layers that combine tensors channel by channel (Add, Multiply, ...) declare their
inputs' ids equal (union-find). After the walk, each union-find root is one *channel*
that can be removed only as a whole; channels created by layers that ever touch each
other form a `ChannelGroup`. A `Member` is one weight axis of one layer, with the map
from its positions to the group's channel indices.
"""

import dataclasses

import numpy as np

from keras_prune.graph import rules
from keras_prune.graph.trace import trace_model

__all__ = ["ChannelGroup", "ChannelGraph", "Member", "analyze", "channel_groups"]


@dataclasses.dataclass(frozen=True, eq=False)
class Member:
    """Weight `weight` of layer `layer`, axis `axis`: position p is group channel `index_map[p]` (-1: not this group)."""

    layer: str
    weight: str
    axis: int
    index_map: np.ndarray

    def positions(self, channel):
        """Positions on this axis that belong to group channel `channel`."""
        return np.flatnonzero(self.index_map == channel)


@dataclasses.dataclass(frozen=True, eq=False)
class ChannelGroup:
    """Channels that shrink together: removing channel i removes it from every member."""

    id: str
    size: int
    members: tuple
    producers: tuple
    prunable: bool
    reason: str = ""

    def __repr__(self):
        state = "prunable" if self.prunable else f"frozen: {self.reason}"
        return f"ChannelGroup(id={self.id!r}, size={self.size}, members={len(self.members)}, {state})"


class RuleContext:
    """What a channel rule may do during the walk (see `keras_prune.graph.rules`)."""

    def __init__(self):
        self.parent = []
        self.producer_of = []
        self.producers = []
        self._made = {}
        self.frozen = {}
        self.members = []
        self._member_axes = {}
        self.resizes = {}
        self.path_of = {}

    def new(self, layer, n, *, tag="out", frozen=None, name=None):
        """Ids for the `n` channels `layer` creates (the same ids on every call).

        A shared weightless layer may create a different number of channels at each call
        (a Softmax over 3 and over 5 features): those are different channels, with ids of
        their own.
        """
        if n is None:
            return None
        key = (id(layer), tag)
        other_width = key in self._made and len(self._made[key]) != n
        if other_width:
            key = (id(layer), tag, n)
        if key not in self._made:
            start = len(self.parent)
            ids = np.arange(start, start + n)
            self.parent.extend(ids.tolist())
            self.producer_of.extend([len(self.producers)] * n)
            if name is None:
                name = self.path_of.get(id(layer), getattr(layer, "name", str(layer)))
                name = name if tag == "out" else f"{name}:{tag}"
                name = f"{name}@{n}" if other_width else name  # a group id of its own
            self.producers.append(name)
            self._made[key] = ids
        ids = self._made[key]
        if frozen:
            self.freeze(ids, layer, frozen)
        return ids

    def find(self, i):
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    def union(self, a, b):
        """Declares the channels of arrays `a` and `b` (same length) identical."""
        if len(a) != len(b):
            raise ValueError(f"Cannot couple channel axes of sizes {len(a)} and {len(b)}.")
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def freeze(self, arr, layer, reason):
        """Marks these channels as not prunable, with the layer and reason that say why."""
        where = layer if isinstance(layer, str) else self.path_of.get(id(layer), layer.name)
        for i in np.asarray(arr).tolist():
            self.frozen.setdefault(i, f"{where}: {reason}")

    def member(self, layer, weight, axis, arr):
        """Axis `axis` of weight `weight` shrinks with the channels in `arr`.

        A shared layer declares the same axis once per call: the channels it sees at
        each call are then one set of channels, since they meet the same weights.
        """
        key = (self.path_of[id(layer)], weight, axis)
        arr = np.asarray(arr)
        if key in self._member_axes:
            self.union(self._member_axes[key], arr)
            return
        self._member_axes[key] = arr
        self.members.append((*key, arr))

    def resize(self, layer, arr, update):
        """`update(config, kept)` rewrites `layer`'s config once `arr` keeps `kept` channels.

        A shared layer has one config for all its calls: the channels it sizes at each call
        are then one set of channels (as with `member`), or frozen if their counts differ.
        """
        if update is None:
            return
        path, arr = self.path_of[id(layer)], np.asarray(arr)
        if path not in self.resizes:
            self.resizes[path] = (arr, update)
        elif len(self.resizes[path][0]) == len(arr):
            self.union(self.resizes[path][0], arr)
        else:
            reason = "a shared layer whose config names a different channel count at each call"
            self.freeze(self.resizes[path][0], layer, reason)
            self.freeze(arr, layer, reason)


class ChannelGraph:
    """The analysis of one model: its groups, and the channel ids of every tensor.

    Build it with `analyze(model)`. Everything keyed by layer uses the layer's path
    (its name, prefixed by the names of the nested models that hold it).
    """

    def __init__(self, model):
        self.model = model
        self.trace = trace_model(model)
        ctx = RuleContext()
        self.layers = {}
        for call in self.trace.calls:
            ctx.path_of.setdefault(id(call.op), call.path)
            self.layers.setdefault(ctx.path_of[id(call.op)], call.op)
        self.tensor_channels = {}
        self.frozen_layers = {}
        for key, tensor in zip(self.trace.inputs, self.trace.input_tensors):
            name = tensor._keras_history.operation.name
            ids = ctx.new(tensor, rules._last(tensor.shape), name=f"input:{name}")
            if ids is not None:
                ctx.freeze(ids, f"input {name}", "model input")
            self.tensor_channels[key] = ids
        for call in self.trace.calls:
            self._apply(ctx, call)
        for key in self.trace.outputs:
            ids = self.tensor_channels.get(key)
            if ids is not None:
                ctx.freeze(ids, "model output", "output shape must not change")
        self._finish(ctx)

    def _apply(self, ctx, call):
        inputs = [self.tensor_channels.get(k) for k in call.inputs]
        in_shapes = [self.trace.shapes[k] for k in call.inputs]
        out_shapes = [self.trace.shapes[k] for k in call.outputs]
        rule = rules.find_rule(call.op) or rules.unknown
        outputs = rule(ctx, call, call.op, inputs, in_shapes, out_shapes)
        if len(outputs) != len(call.outputs):
            raise RuntimeError(
                f"Channel rule for {type(call.op).__name__} returned {len(outputs)} "
                f"outputs for {len(call.outputs)} tensors."
            )
        for key, ids in zip(call.outputs, outputs):
            self.tensor_channels[key] = None if ids is None else np.asarray(ids)

    def _finish(self, ctx):
        n = len(ctx.parent)
        self.root = np.array([ctx.find(i) for i in range(n)], dtype=np.int64)
        self.resizes = ctx.resizes
        self.raw_members = [(layer, w, axis, ids) for layer, w, axis, ids in ctx.members]
        frozen_roots = {}
        for i, reason in ctx.frozen.items():
            frozen_roots.setdefault(int(self.root[i]), reason)
        for reason in frozen_roots.values():
            where, _, why = reason.partition(": ")
            self.frozen_layers.setdefault(where, why)
        # Producers whose channels ever meet belong to one group.
        producer_of = np.asarray(ctx.producer_of, dtype=np.int64)
        group_parent = list(range(len(ctx.producers)))

        def find(p):
            while group_parent[p] != p:
                group_parent[p] = group_parent[group_parent[p]]
                p = group_parent[p]
            return p

        first_producer = {}
        for i in range(n):
            r = int(self.root[i])
            p = int(producer_of[i])
            if r in first_producer:
                a, b = find(first_producer[r]), find(p)
                if a != b:
                    group_parent[max(a, b)] = min(a, b)
            else:
                first_producer[r] = p
        channels_of = {}
        for i in range(n):
            g = find(int(producer_of[i]))
            roots = channels_of.setdefault(g, {})
            roots.setdefault(int(self.root[i]), len(roots))
        self.group_of_root = {}
        self.channel_of_root = {}
        member_rows = {g: [] for g in channels_of}
        for layer, weight, axis, arr in ctx.members:
            if arr.size == 0:
                continue
            roots = self.root[arr]
            for g in {find(int(producer_of[r])) for r in np.unique(roots).tolist()}:
                member_rows[g].append((layer, weight, axis, roots))
        self.groups = []
        for g, roots in channels_of.items():
            for r, c in roots.items():
                self.group_of_root[r] = len(self.groups)
                self.channel_of_root[r] = c
            lookup = np.full(n, -1, dtype=np.int64)
            lookup[list(roots)] = list(roots.values())
            members = tuple(
                Member(layer, weight, axis, lookup[rr]) for layer, weight, axis, rr in member_rows[g]
            )
            reasons = [frozen_roots[r] for r in roots if r in frozen_roots]
            producers = tuple(
                sorted({ctx.producers[p] for p in range(len(ctx.producers)) if find(p) == g})
            )
            self.groups.append(
                ChannelGroup(
                    id=ctx.producers[g],
                    size=len(roots),
                    members=members,
                    producers=producers,
                    prunable=not reasons and bool(members),
                    reason=reasons[0] if reasons else ("" if members else "no weights to shrink"),
                )
            )
        self._by_id = {g.id: g for g in self.groups}
        self.segments = {
            ctx.producers[g]: parts
            for g, parts in self._find_segments(channels_of, lambda r: find(int(producer_of[r]))).items()
        }

    def _find_segments(self, channels_of, group_of):
        """`{group id: [(layer path, channel indices)]}` for groups in which a resized layer holds
        only some of the channels: a concatenation joined to another tensor by Add or
        Multiply makes one group that several layers each produce a part of. Every such
        part must keep a channel, or its layer would be left with none.
        """
        segments = {}
        for path, (ids, _) in self.resizes.items():
            roots = np.unique(self.root[ids]) if len(ids) else ()
            groups = {group_of(int(r)) for r in roots}
            if len(groups) == 1:
                (g,) = groups
                if len(roots) < len(channels_of[g]):
                    indices = np.sort([channels_of[g][int(r)] for r in roots])
                    segments.setdefault(g, []).append((path, indices))
        return segments

    def covering(self, group_id, indices, order=None):
        """`indices` plus, for each layer of the group (see `segments`) they leave no channel, its
        first channel in `order` (a best-first ranking of the group's channels; default: channel order)."""
        indices = np.asarray(indices, dtype=np.int64)
        parts = self.segments.get(group_id)
        if not parts:
            return indices
        rank = np.empty(self.group(group_id).size, dtype=np.int64)
        rank[np.arange(len(rank)) if order is None else np.asarray(order)] = np.arange(len(rank))
        missing = [part[np.argmin(rank[part])] for _, part in parts if not np.isin(part, indices).any()]
        return np.sort(np.concatenate([indices, np.asarray(missing, dtype=np.int64)])) if missing else indices

    @property
    def prunable_groups(self):
        """The groups that can lose channels, in model order."""
        return [g for g in self.groups if g.prunable]

    def group(self, group_id):
        """The group with this id; raises KeyError naming the valid ids."""
        try:
            return self._by_id[group_id]
        except KeyError:
            raise KeyError(
                f"No channel group {group_id!r} in model {self.model.name!r}. "
                f"Valid ids: {sorted(self._by_id)}"
            ) from None

    def alive(self, keep):
        """Boolean per channel id: does it survive `keep` ({group_id: channel indices})?"""
        alive_group = {}
        for group_id, indices in (keep or {}).items():
            group = self.group(group_id)
            indices, counts = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1), return_counts=True)
            if (counts > 1).any():  # a caller's bug: the kept count would silently differ from the one asked for
                raise ValueError(
                    f"keep[{group_id!r}] lists channels {indices[counts > 1].tolist()} more than once; "
                    "list each kept channel once."
                )
            if indices.size and (indices.min() < 0 or indices.max() >= group.size):
                raise ValueError(
                    f"Channel indices for group {group_id!r} must be in [0, {group.size}). "
                    f"Received: min={indices.min()}, max={indices.max()}"
                )
            if indices.size == group.size:
                continue
            if not group.prunable:
                raise ValueError(
                    f"Group {group_id!r} is frozen ({group.reason}); it cannot lose channels."
                )
            if indices.size == 0:
                raise ValueError(
                    f"Every group keeps at least one channel. Received: keep[{group_id!r}]=[]"
                )
            flags = np.zeros(group.size, dtype=bool)
            flags[indices] = True
            for path, part in self.segments.get(group_id, ()):
                if not flags[part].any():
                    raise ValueError(
                        f"keep[{group_id!r}] leaves layer {path!r} no channel: it makes {len(part)} of the group's "
                        f"{group.size} (a concatenation joined by Add or Multiply). Keep one of them; "
                        "ChannelGraph.covering(group_id, indices) adds it."
                    )
            alive_group[self._by_id[group_id]] = flags
        return self.spread(alive_group, True, bool)

    def copies(self, widths):
        """Per channel id, how many channels it stands for when each group in `widths`
        (`{group_id: channel count}`) has that many: fewer keeps the first ones (and the first
        of each layer's part they miss, see `covering`), more (up to twice the group) doubles
        the first ones. For the FLOPs of a narrower or wider variant
        without building it, and for building a wider one (`expand_channels`).
        """
        per_group = {}
        for group_id, width in widths.items():
            group = self.group(group_id)
            width = int(width)
            if width == group.size:
                continue
            if not group.prunable:
                raise ValueError(f"Group {group_id!r} is frozen ({group.reason}); it cannot change width.")
            if not 1 <= width <= 2 * group.size:
                raise ValueError(
                    f"Group {group_id!r} of {group.size} channels can have between 1 and "
                    f"{2 * group.size}. Received: {width}"
                )
            per_channel = np.zeros(group.size, dtype=np.int64)
            per_channel[self.covering(group_id, np.arange(min(width, group.size)))] = 1
            per_channel[: max(width - group.size, 0)] = 2
            per_group[group] = per_channel
        return self.spread(per_group, 1, np.int64)

    def spread(self, per_group, fill, dtype):
        """Per channel id, its group channel's value in `per_group` (`{ChannelGroup: array}`), else `fill`."""
        values = np.full(len(self.root), fill, dtype=dtype)
        if not per_group:
            return values
        for r in np.unique(self.root).tolist():
            group = self.groups[self.group_of_root[r]]
            if group in per_group:
                values[r] = per_group[group][self.channel_of_root[r]]
        return values[self.root]

    def channels_of(self, ids):
        """`(group, channel index)` of each channel id in `ids`."""
        return [(self.groups[self.group_of_root[int(r)]], self.channel_of_root[int(r)]) for r in self.root[ids]]

    def kept_positions(self, ids, alive):
        """Positions of a channel id array that survive."""
        return np.flatnonzero(alive[ids])


def analyze(model):
    """Analyses a functional or Sequential Keras model into its channel groups."""
    return ChannelGraph(model)


def channel_groups(model):
    """The `ChannelGroup`s of `model` (prunable and frozen; see `ChannelGroup.prunable`)."""
    return analyze(model).groups
