"""Meeting a FLOPs budget: from channel scores and a rule, to a `keep` for surgery."""

import numpy as np

from keras_prune.errors import PruneError
from keras_prune.graph.flops import count_flops

__all__ = ["BudgetResult", "global_budget", "min_reachable_ratio", "top_channels", "uniform_budget"]


class BudgetResult(dict):
    """`keep`, the achieved FLOPs `ratio`, and the `fraction` the search settled on."""

    @property
    def keep(self):
        return self["keep"]


def top_channels(scores, count):
    """Indices of the `count` highest scores, in channel order."""
    count = int(min(max(count, 1), len(scores)))
    return np.sort(np.argsort(-np.asarray(scores), kind="stable")[:count])


def _counts(groups, fraction):
    return {g.id: max(1, int(round(fraction * g.size))) for g in groups}


def min_reachable_ratio(graph, groups, full_flops=None):
    """FLOPs ratio with every listed group cut to one channel: the smallest budget.

    `full_flops` is the reference (default: the analysed model's own FLOPs).
    """
    full = full_flops or count_flops(graph.model, graph=graph).total
    keep = {g.id: [0] for g in groups}
    return count_flops(graph.model, keep, graph=graph).total / full


def uniform_budget(graph, groups, scores, target, *, iterations=40):
    """Keeps the same fraction of every group (the top-scored channels) to meet `target`.

    Bisects the kept fraction; returns the iterate whose FLOPs ratio is closest to
    `target` (FLOPs fall in steps of one channel, so an exact hit is not guaranteed).

    Raises:
        PruneError: if `target` is below what one channel per group reaches.
    """
    full = count_flops(graph.model, graph=graph).total
    _check_reachable(graph, groups, target, full)

    def evaluate(fraction):
        counts = _counts(groups, fraction)
        keep = {g.id: top_channels(scores[g.id], counts[g.id]) for g in groups}
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


def _check_reachable(graph, groups, target, full):
    if not groups:
        raise PruneError("The model has no prunable channel groups (see graph.analyze(model).frozen_layers).")
    floor = min_reachable_ratio(graph, groups, full)
    if target < floor:
        raise PruneError(
            f"--target_flops={target:g} is not reachable: keeping one channel in every "
            f"prunable group still costs {floor:.4f} of the FLOPs. The smallest reachable "
            f"value is {floor:.4f}."
        )


def global_budget(graph, groups, scores, target, *, reference_flops=None, refine=256):
    """Keeps the globally top-scored channels, as many as meet `target`.

    One ranking over the channels of all `groups` (each channel counts once, whatever
    its group's size); a bisection on how many are kept finds the count whose FLOPs
    ratio is closest to `target`. Every group keeps at least one channel, its best.

    One channel of an early, high-resolution layer can cost more than 1% of a small
    model's FLOPs, so the two counts around the target may both miss it by that much.
    The margin below the target is then filled with the next-ranked channels that
    still fit, in rank order, skipping those that would overshoot (up to `refine`
    of them; 0 turns this off).

    Args:
        scores: `{group_id: per-channel scores}`; comparable across groups.
        reference_flops: the FLOPs `target` is a fraction of (default: the analysed
            model's). Pruning from Scratch measures against the unexpanded model, so
            its ratio can exceed 1 when little is pruned.
        refine: how many next-ranked channels the margin filling may try.

    Returns:
        A `BudgetResult` with `keep`, `ratio`, `fraction` (of the ranked channels kept)
        and `counts` per group.

    Raises:
        PruneError: if `target` is below what one channel per group reaches.
    """
    full = reference_flops or count_flops(graph.model, graph=graph).total
    _check_reachable(graph, groups, target, full)
    flat = np.concatenate([np.asarray(scores[g.id], dtype="float64") for g in groups])
    order = np.argsort(-flat, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    offsets = np.cumsum([0] + [g.size for g in groups])

    def result(chosen):
        keep = {}
        for i, group in enumerate(groups):
            ranks = rank[offsets[i] : offsets[i + 1]]
            kept = np.flatnonzero(chosen[offsets[i] : offsets[i + 1]])
            keep[group.id] = kept if kept.size else np.array([int(np.argmin(ranks))])
        ratio = count_flops(graph.model, keep, graph=graph).total / full
        counts = {g.id: len(keep[g.id]) for g in groups}
        return BudgetResult(keep=keep, ratio=ratio, fraction=int(chosen.sum()) / flat.size, counts=counts)

    def evaluate(kept):
        return result(rank < kept)

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
        chosen = rank < low
        best = below
        for channel in order[high : high + refine]:
            if target - best["ratio"] <= 1e-4 * target:
                break
            chosen[channel] = True
            trial = result(chosen)
            if trial["ratio"] <= target:
                best = trial
            else:
                chosen[channel] = False
        candidates.append(best)
    return min(candidates, key=lambda result: abs(result["ratio"] - target))
