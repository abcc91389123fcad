"""`slimming`: Network Slimming (Liu et al., ICCV 2017), the baseline Pruning from Scratch beats.

Train the model from scratch (fresh weights from its initializers, as the paper does; the
pipeline's pre-trained model is only the dense reference) with an L1 penalty on the
BatchNorm scales (`--slimming_sparsity` s, `--epochs` epochs at `--pretrain_learning_rate`
with `--pretrain_schedule` and `--pretrain_weight_decay`), rank every
prunable channel by |gamma| in one global ranking, keep the top channels until the pruned
model meets `--target_flops`, then fine-tune. Channel groups tied by residual additions sum
the |gamma| of their BatchNorms and are left whole unless `--prune_residual`, as for `l1`
and `scratch`.

The sparsity-trained weights are checkpointed (`CHECKPOINT`) before pruning: `--resume`
after a kill during fine-tuning prunes them again, to the same structure its fine-tuning
backup belongs to, instead of repeating the sparsity training. A kill during the sparsity
training resumes it from its last epoch (`BackupAndRestore`), and `ELAPSED` carries the
seconds it had taken into the reported search seconds.
"""

import os
import time
from contextlib import contextmanager

import keras
import numpy as np

from keras_prune.errors import PruneError
from keras_prune.export.report_io import assign_arrays, read_json, read_state, variable_arrays, write_state
from keras_prune.graph import analyze, prune_channels, reinitialize
from keras_prune.methods.base import MethodResult, retrain
from keras_prune.methods.budget import check_reachable, global_budget, off_target_warning
from keras_prune.methods.l1 import select_groups
from keras_prune.training import train_classifier
from keras_prune.training.fit import ElapsedSeconds

__all__ = ["CHECKPOINT", "bn_scale_scores", "gamma_l1", "preflight", "run", "sparsity_train"]

CHECKPOINT = os.path.join("slimming", "sparsity_trained.npz")
"""The sparsity-trained weights and the seconds they took, in the run folder (for --resume)."""

ELAPSED = os.path.join("slimming", "sparsity_seconds.json")
"""Seconds of sparsity training at the end of its last finished epoch (for --resume after a kill in it)."""


def _bn_members(graph, group):
    for member in group.members:
        layer = graph.layers[member.layer]
        if isinstance(layer, keras.layers.BatchNormalization) and member.weight == "gamma":
            yield layer, member


def bn_scale_scores(graph, groups):
    """`{group id: sum of |gamma| per channel}` for the groups that have a BatchNorm."""
    scores = {}
    for group in groups:
        total = np.zeros(group.size)
        found = False
        for layer, member in _bn_members(graph, group):
            gamma = np.abs(np.asarray(layer.gamma.numpy(), dtype="float64"))
            valid = member.index_map >= 0
            np.add.at(total, member.index_map[valid], gamma[valid])
            found = True
        if found:
            scores[group.id] = total
    return scores


@contextmanager
def gamma_l1(model, strength):
    """Within the block, every BatchNorm scale of `model` carries an L1 penalty `strength`."""
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    previous = [layer.gamma.regularizer if layer.scale else None for layer in layers]
    try:
        for layer in layers:
            if layer.scale:
                layer.gamma.regularizer = keras.regularizers.L1(strength)
        yield layers
    finally:
        for layer, regularizer in zip(layers, previous):
            if layer.scale:
                layer.gamma.regularizer = regularizer


def sparsity_train(
    model, data, strategy, *, epochs, strength, learning_rate, schedule="constant", weight_decay=None, callbacks=(),
    verbose=2,
):
    """Trains `model` with the L1 penalty on its BatchNorm scales (the search of slimming).

    This is a full training from scratch, so it takes the pre-training schedule (Liu et al. 2017
    decay theirs: `schedule="step"`)."""
    with gamma_l1(model, strength) as layers:
        if not layers:
            raise PruneError(
                f"Network Slimming ranks channels by BatchNorm scales, and model {model.name!r} has "
                "no BatchNormalization layer. Use --method=l1 instead."
            )
        return train_classifier(
            model,
            data,
            strategy,
            epochs=epochs,
            learning_rate=learning_rate,
            schedule=schedule,
            weight_decay=weight_decay,
            phase="sparsity",
            callbacks=callbacks,
            verbose=verbose,
            learning_rate_flag="--pretrain_learning_rate",
        )


def _ranked_groups(model, config):
    """(graph, candidate groups, the ones with a BatchNorm), once the budget is known to be reachable."""
    graph = analyze(model)
    candidates = select_groups(graph, prune_residual=config.prune_residual)
    groups = [g for g in candidates if g.id in bn_scale_scores(graph, candidates)]
    if not groups:
        tied = [] if config.prune_residual else select_groups(graph, prune_residual=True)
        hint = ("--prune_residual (its BatchNorms are on channel groups with several producers, tied by residual "
                "additions or a layer called more than once, which stay whole by default), or --method=l1"
                if bn_scale_scores(graph, tied) else "--method=l1")
        raise PruneError(
            f"No prunable channel group of model {model.name!r} passes through a BatchNormalization; "
            f"Network Slimming has nothing to rank. Use {hint} instead."
        )
    check_reachable(graph, groups, config.target_flops, round_to=config.round_to)
    return graph, candidates, groups


def preflight(model, config):
    """Raises a PruneError for a model without BatchNorm or an unreachable budget (before any training)."""
    _ranked_groups(model, config)


def run(model, data, ctx):
    """Sparsity-trains `model`, prunes it by global |gamma| to the FLOPs target, fine-tunes."""
    config = ctx.config
    verbose = 0 if config.verbose == 0 else 2
    with ctx.strategy.scope():  # from scratch: the initializers' draws, not the (pre-)trained weights
        model = reinitialize(model, name=model.name)
    start = time.perf_counter()
    graph, candidates, groups = _ranked_groups(model, config)
    checkpoint, elapsed = os.path.join(ctx.output_dir, CHECKPOINT), os.path.join(ctx.output_dir, ELAPSED)
    trained_before = 0.0
    if config.resume and os.path.exists(checkpoint):
        state, arrays = read_state(checkpoint)
        assign_arrays(model.weights, arrays, "w")
        trained_before = state["seconds"]
        ctx.log(f"slimming: resuming after sparsity training, from {checkpoint}")
    else:
        ctx.log(f"slimming: {config.epochs} epoch(s) with L1 {config.slimming_sparsity:g} on the BatchNorm scales")
        if config.resume and os.path.exists(elapsed):  # killed during the sparsity training
            trained_before = float(read_json(elapsed)["seconds"])
        sparsity_train(
            model,
            data,
            ctx.strategy,
            epochs=config.epochs,
            strength=config.slimming_sparsity,
            learning_rate=config.pretrain_learning_rate,
            schedule=config.pretrain_schedule,
            weight_decay=config.pretrain_weight_decay or None,
            callbacks=[*ctx.callbacks("sparsity"), ElapsedSeconds(elapsed, trained_before)],
            verbose=verbose,
        )
        trained_before += time.perf_counter() - start
        write_state(checkpoint, {"seconds": trained_before}, variable_arrays(model.weights, "w"))
        ctx.phase_done("sparsity")
        start = time.perf_counter()
    scores = bn_scale_scores(graph, groups)  # the trained scales: training updates the layers in place
    budget = global_budget(graph, groups, scores, config.target_flops, round_to=config.round_to)
    with ctx.strategy.scope():
        pruned = prune_channels(model, budget.keep, graph=graph)
    search_seconds = trained_before + time.perf_counter() - start
    ctx.log(
        f"slimming: kept {budget['fraction']:.1%} of the ranked channels -> {budget['ratio']:.4f} of the FLOPs "
        f"(target {config.target_flops:g})"
    )
    warning = off_target_warning("slimming", budget["ratio"], config.target_flops, round_to=config.round_to)
    if warning:
        ctx.log(warning)
    retrain_seconds = retrain(pruned, data, ctx, epochs=config.finetune_epochs, phase="finetune")
    return MethodResult(
        model=pruned,
        search_seconds=search_seconds,
        retrain_seconds=retrain_seconds,
        details={
            "flops_ratio_after_search": round(budget["ratio"], 6),
            "kept_channel_fraction": round(budget["fraction"], 6),
            "groups": [{"group": g.id, "size": g.size, "kept": budget["counts"][g.id]} for g in groups],
            "groups_without_batchnorm": len(candidates) - len(groups),
        },
    )
