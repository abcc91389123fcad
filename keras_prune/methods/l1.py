"""`l1`: uniform L1-norm filter pruning (Li et al., ICLR 2017), the baseline every paper beats.

Every prunable group keeps the same fraction of its channels, those whose producing
filters have the largest L1 norm; the fraction is bisected until the pruned model meets
the FLOPs target; the result is fine-tuned. Groups tied together by residual additions
are left whole unless `prune_residual` is set, as in the paper's ResNet experiments.
"""

import time

from keras_prune.criteria import filter_norms
from keras_prune.graph import analyze, prune_channels
from keras_prune.methods.base import MethodResult, retrain
from keras_prune.methods.budget import check_reachable, off_target_warning, uniform_budget

__all__ = ["preflight", "run", "select_groups"]


def select_groups(graph, *, prune_residual=False):
    """The groups a structured method prunes: all prunable ones, residual ones on request."""
    return [g for g in graph.prunable_groups if prune_residual or len(g.producers) == 1]


def preflight(model, config):
    """Raises a PruneError if `config.target_flops` is out of reach (before any training)."""
    graph = analyze(model)
    check_reachable(
        graph, select_groups(graph, prune_residual=config.prune_residual), config.target_flops, round_to=config.round_to
    )


def run(model, data, ctx):
    """Prunes `model` to `ctx.config.target_flops` by filter L1 norm, then fine-tunes."""
    config = ctx.config
    start = time.perf_counter()
    graph = analyze(model)
    groups = select_groups(graph, prune_residual=config.prune_residual)
    scores = {g.id: filter_norms(graph, g) for g in groups}
    budget = uniform_budget(graph, groups, scores, config.target_flops, round_to=config.round_to)
    with ctx.strategy.scope():
        pruned = prune_channels(model, budget.keep, graph=graph)
    search_seconds = time.perf_counter() - start
    ctx.log(
        f"l1: kept {budget['fraction']:.1%} of each of {len(groups)} groups"
        f"{f' (each count then rounded to --round_to={config.round_to})' if config.round_to > 1 else ''} -> "
        f"{budget['ratio']:.4f} of the FLOPs (target {config.target_flops:g})"
    )
    warning = off_target_warning("l1", budget["ratio"], config.target_flops, round_to=config.round_to,
                                 rule="one kept fraction for every group and the channel counts")
    if warning:
        ctx.log(warning)
    retrain_seconds = retrain(pruned, data, ctx, epochs=config.finetune_epochs, phase="finetune")
    return MethodResult(
        model=pruned,
        search_seconds=search_seconds,
        retrain_seconds=retrain_seconds,
        details={
            "kept_fraction_per_group": round(budget["fraction"], 6),
            "flops_ratio_after_search": round(budget["ratio"], 6),
            "groups_pruned": len(groups),
            "groups_left_whole": len(graph.prunable_groups) - len(groups),
        },
    )
