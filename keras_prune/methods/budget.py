"""Meeting a FLOPs budget: from channel scores and a rule, to a `keep` for surgery.

`round_to` makes every pruned group keep a multiple of that many channels (or the
whole group; Torch-Pruning's `round_to`). Channel counts matter for speed as well as
FLOPs: on this project's CPU, at batch 32, a conv with 15, 12 or 9 channels ran 1.1-1.3x
*slower* than one with 16, and one with 8 ran 0.77x (`benchmarks/results/channel_counts.json`).
The price is a coarser FLOPs grid, so the target is met less closely.

Every keep passes through `ChannelGraph.covering`: in a group several layers each make a
part of, each part keeps its best channel, which may add one to a rounded count.
"""

import numpy as np

from keras_prune.errors import PruneError
from keras_prune.graph.flops import count_flops

__all__ = [
    "BudgetResult",
    "check_reachable",
    "check_round_to",
    "global_budget",
    "min_reachable_ratio",
    "next_count",
    "round_count",
    "top_channels",
    "uniform_budget",
    "why_nothing_to_prune",
]


class BudgetResult(dict):
    """`keep`, the achieved FLOPs `ratio`, and the `fraction` the search settled on."""

    @property
    def keep(self):
        return self["keep"]


def top_channels(scores, count):
    """Indices of the `count` highest scores, in channel order."""
    count = int(min(max(count, 1), len(scores)))
    return np.sort(_best_first(scores)[:count])


def _best_first(scores):
    """Channel indices from the highest score to the lowest (ties in channel order)."""
    return np.argsort(-np.asarray(scores), kind="stable")


def check_round_to(round_to):
    """`round_to` as an int, or a PruneError if it is not a whole number >= 1."""
    if isinstance(round_to, bool) or int(round_to) != round_to or round_to < 1:
        raise PruneError(f"round_to must be a whole number >= 1 (1: any channel count). Received: {round_to!r}.")
    return int(round_to)


def round_count(count, size, round_to=1):
    """The channel count a group of `size` may keep that is nearest `count`.

    Allowed counts are the multiples of `round_to` and the whole group; a group no
    larger than `round_to` stays whole. Ties round up. Never below one channel.
    """
    size = int(size)
    count = int(min(max(int(count), 1), size))
    if round_to <= 1 or count == size:
        return count
    if size <= round_to:
        return size
    low = max(round_to, count // round_to * round_to)
    if count <= low:
        return low
    high = min(low + round_to, size)
    return high if count - low >= high - count else low


def next_count(count, size, round_to=1):
    """The smallest allowed count above `count` (`size` when nothing is left to add)."""
    return min((int(count) // round_to + 1) * round_to, int(size))


def _counts(groups, fraction, round_to):
    return {g.id: round_count(round(fraction * g.size), g.size, round_to) for g in groups}


def min_reachable_ratio(graph, groups, full_flops=None, *, round_to=1):
    """FLOPs ratio with every listed group cut as far as it goes: the smallest budget.

    That is one channel per group, or `round_to` channels (a group no larger stays
    whole). `full_flops` is the reference (default: the analysed model's own FLOPs).
    """
    full = full_flops or count_flops(graph.model, graph=graph).total
    keep = {g.id: graph.covering(g.id, np.arange(round_count(1, g.size, round_to))) for g in groups}
    return count_flops(graph.model, keep, graph=graph).total / full


def uniform_budget(graph, groups, scores, target, *, iterations=40, round_to=1):
    """Keeps the same fraction of every group (the top-scored channels) to meet `target`.

    Bisects the kept fraction; returns the iterate whose FLOPs ratio is closest to
    `target` (FLOPs fall in steps of one channel, or of `round_to` channels, so an
    exact hit is not guaranteed).

    Raises:
        PruneError: if `target` is below what the smallest allowed counts reach.
    """
    round_to = check_round_to(round_to)
    full = count_flops(graph.model, graph=graph).total
    check_reachable(graph, groups, target, full, round_to=round_to)

    def evaluate(fraction):
        counts = _counts(groups, fraction, round_to)
        keep = {g.id: graph.covering(g.id, top_channels(scores[g.id], counts[g.id]), _best_first(scores[g.id]))
                for g in groups}
        return keep, count_flops(graph.model, keep, graph=graph).total / full

    low, high = 0.0, 1.0
    best = None
    for _ in range(iterations):
        middle = (low + high) / 2
        keep, ratio = evaluate(middle)
        if best is None or abs(ratio - target) < abs(best["ratio"] - target):
            best = BudgetResult(keep=keep, ratio=ratio, fraction=middle)
        if ratio > target:
            high = middle
        else:
            low = middle
    return best


def why_nothing_to_prune(graph, shown=3):
    """Why `graph` offers no channel group to a method: residual-tied groups only, or the frozen layers."""
    if graph.prunable_groups:
        return (
            f"its {len(graph.prunable_groups)} prunable group(s) each have several producers (channels tied "
            "by residual additions, or by a layer called more than once), and such groups stay whole by "
            "default; pass --prune_residual to prune each as one group."
        )
    frozen = [f"{where} ({why})" for where, why in graph.frozen_layers.items()]
    more = f" and {len(frozen) - shown} more" if len(frozen) > shown else ""
    return (
        "every channel is frozen by what it feeds or comes from: " + "; ".join(frozen[:shown]) + more
        + " (keras_prune.graph.analyze(model).frozen_layers lists them all)."
    )


def off_target_warning(method, ratio, target, *, round_to=1, rule="the model's channel counts"):
    """A warning line when a budget search ends more than 1% off `target` (None otherwise): `rule`
    (the channel counts of the model, or `round_to`'s steps) allows nothing closer."""
    off_by = abs(ratio - target) / target
    if off_by <= 0.01:
        return None
    hint = " (a smaller --round_to gets closer)" if round_to > 1 else ""
    return (f"{method}: warning: {ratio:.4f} of the FLOPs is {off_by:.1%} off --target_flops={target:g}, "
            f"the closest {rule} allow{hint}")


def check_reachable(graph, groups, target, full_flops=None, *, round_to=1):
    """Raises a PruneError naming the smallest reachable budget if `target` is below it.

    Methods that train before they prune call this first, so that an impossible budget
    fails before the training, not after it.
    """
    if not groups:
        raise PruneError(f"The model has no prunable channel group: {why_nothing_to_prune(graph)}")
    floor = min_reachable_ratio(graph, groups, full_flops, round_to=round_to)
    if target < floor:
        least = (
            "one channel"
            if round_to == 1
            else f"{round_to} channels (--round_to; a smaller group stays whole)"
        )
        hint = "" if round_to == 1 else " A smaller --round_to lowers it."
        raise PruneError(
            f"--target_flops={target:g} is not reachable: keeping {least} in every "
            f"group pruned still costs {floor:.4f} of the FLOPs. The smallest reachable "
            f"value is {floor:.4f}.{hint}"
        )


def global_budget(graph, groups, scores, target, *, reference_flops=None, refine=256, round_to=1):
    """Keeps the globally top-scored channels, as many as meet `target`.

    One ranking over the channels of all `groups` (each channel counts once, whatever
    its group's size); a bisection on how many are kept finds the count whose FLOPs
    ratio is closest to `target`. Every group keeps at least one channel, its best;
    with `round_to`, each group's share of the ranking is rounded to an allowed count
    (see `round_count`) and filled with its own best channels.

    One channel of an early, high-resolution layer can cost more than 1% of a small
    model's FLOPs, so the two counts around the target may both miss it by that much.
    The margin below the target is then filled, in rank order, by growing the group
    whose next channel ranks best to its next allowed count, skipping groups that
    would overshoot (up to `refine` growth steps; 0 turns this off).

    Args:
        scores: `{group_id: per-channel scores}`; comparable across groups.
        reference_flops: the FLOPs `target` is a fraction of (default: the analysed
            model's). Pruning from Scratch measures against the unexpanded model, so
            its ratio can exceed 1 when little is pruned.
        refine: how many growth steps the margin filling may take.
        round_to: kept channel counts are multiples of this (or the whole group).

    Returns:
        A `BudgetResult` with `keep`, `ratio`, `fraction` (of the groups' channels kept,
        counting the one a group keeps when the ranking would empty it) and `counts`
        per group.

    Raises:
        PruneError: if `target` is below what the smallest allowed counts reach.
    """
    round_to = check_round_to(round_to)
    full = reference_flops or count_flops(graph.model, graph=graph).total
    check_reachable(graph, groups, target, full, round_to=round_to)
    flat = np.concatenate([np.asarray(scores[g.id], dtype="float64") for g in groups])
    order = np.argsort(-flat, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    offsets = np.cumsum([0] + [g.size for g in groups])
    ranks = [rank[offsets[i] : offsets[i + 1]] for i in range(len(groups))]
    orders = [np.argsort(r, kind="stable") for r in ranks]

    def result(counts):
        keep = {g.id: graph.covering(g.id, np.sort(orders[i][: counts[i]]), orders[i])
                for i, g in enumerate(groups)}
        ratio = count_flops(graph.model, keep, graph=graph).total / full
        kept = {g.id: len(keep[g.id]) for g in groups}  # covering may add a channel per part of a group
        return BudgetResult(keep=keep, ratio=ratio, fraction=sum(kept.values()) / flat.size, counts=kept)

    def evaluate(kept):
        return result([round_count(np.sum(r < kept), g.size, round_to) for r, g in zip(ranks, groups)])

    low, high = 0, int(flat.size)
    while high - low > 1:
        middle = (low + high) // 2
        if evaluate(middle)["ratio"] >= target:
            high = middle
        else:
            low = middle
    below, above = evaluate(low), evaluate(high)
    candidates = [below, above]
    if refine and below["ratio"] < target:
        candidates.append(_fill_margin(below, groups, ranks, orders, target, refine, round_to, result))
    return min(candidates, key=lambda result: abs(result["ratio"] - target))


def _fill_margin(start, groups, ranks, orders, target, steps, round_to, result):
    """Grows groups in the rank order of their next channel while the FLOPs stay <= target.

    At most `steps` growth steps are taken; a step that would overshoot blocks its group
    for good (growing the others only makes that step dearer), so the loop ends.
    """
    counts = [start["counts"][g.id] for g in groups]
    best = start
    blocked = set()
    taken = 0
    while taken < steps and target - best["ratio"] > 1e-4 * target:
        open_groups = [i for i, g in enumerate(groups) if i not in blocked and counts[i] < g.size]
        if not open_groups:
            break
        i = min(open_groups, key=lambda i: ranks[i][orders[i][counts[i]]])
        trial_counts = list(counts)
        trial_counts[i] = next_count(counts[i], groups[i].size, round_to)
        trial = result(trial_counts)
        if trial["ratio"] <= target:
            counts, best = trial_counts, trial
            taken += 1
        else:
            blocked.add(i)
    return best
