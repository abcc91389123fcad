"""`lstm.run`: the method's driver (search, retrain the best structure, report)."""

import dataclasses
import math
import os
import time

import keras
import tensorflow as tf

from keras_prune.graph import analyze
from keras_prune.methods.base import MethodResult, retrain
from keras_prune.methods.lstm.report import describe, write_plots
from keras_prune.methods.lstm.search import LSTMSearch
from keras_prune.methods.lstm.settings import LSTMSettings
from keras_prune.methods.lstm.structure import StructureSpace

__all__ = ["WORKDIR", "preflight", "run", "train_and_validation"]

WORKDIR = "lstm"
"""The method's folder inside the run folder: checkpoint.npz and children/."""


def train_and_validation(data, batch_size, *, seed=0):
    """`data` whose train split is train + validation, reshuffled each epoch (no validation left).

    The paper retrains the best structure on both; the test split stays untouched. The
    loaders build that split as a train pipeline of its own (`Dataset.with_validation_in_train`),
    so validation examples are augmented like the rest; it has the loader's batch size and
    seed (`batch_size` and `seed` serve the fallback only) and reshuffles every pass, so two
    trainings in a row see two orders. For data without one (a `Dataset`
    put together by hand), the two batched splits are interleaved at random in proportion
    to their sizes, so validation examples are spread over the whole epoch (a concatenation
    and a bounded shuffle buffer would leave them at its end on a large dataset); they keep
    the validation split's transform.
    """
    merged = data.with_validation_in_train()
    if merged is not None:
        return merged
    total = data.info.num_train + data.info.num_validation
    examples = tf.data.Dataset.sample_from_datasets(
        [data.train.unbatch(), data.validation.unbatch()],
        weights=[data.info.num_train / total, data.info.num_validation / total],
        seed=seed,
        rerandomize_each_iteration=True,
    )
    train = (
        examples.batch(batch_size)
        .apply(tf.data.experimental.assert_cardinality(math.ceil(total / batch_size)))
        .prefetch(tf.data.AUTOTUNE)
    )
    info = dataclasses.replace(data.info, num_train=total, num_validation=0)
    return dataclasses.replace(data, train=train, info=info)


def _space(model, config, settings):
    return StructureSpace(
        analyze(model), prune_rate=settings.prune_rate, prune_residual=config.prune_residual, round_to=config.round_to
    )


def preflight(model, config):
    """Raises a PruneError for invalid lstm settings or a model with fewer than two searchable
    groups, before the pipeline pre-trains it."""
    _space(model, config, LSTMSettings.from_config(config))


def missed_target_warning(best_ratio, floor, target, smallest_searched):
    """A warning line if the best structure keeps over 1% more FLOPs than a reachable `target`
    (the target stops the search; an unreachable one was warned about before it began).
    `smallest_searched`: the lowest FLOPs ratio among the structures the search evaluated."""
    if best_ratio <= target * 1.01 or floor > target:
        return None
    why = ("the structures searched at or below it were rewarded less" if smallest_searched <= target else
           "the search stopped before a structure reached it (more --lstm_epochs, --patience or a larger "
           "--prune_rate search further)")
    return f"lstm: warning: the best structure keeps {best_ratio:.4f} of the FLOPs, above --target_flops={target:g}: {why}"


def run(model, data, ctx):
    """Searches where to prune `model` with the LSTM controller, then retrains the best structure.

    Raises:
        PruneError: for invalid settings or a model with fewer than two prunable groups.
    """
    config = ctx.config
    settings = LSTMSettings.from_config(config)
    start = time.perf_counter()
    space = _space(model, config, settings)
    ctx.log(
        f"lstm: {len(space.groups)} groups, prune rate {settings.prune_rate:g}; up to {settings.max_epochs} "
        f"controller epoch(s) of {settings.parents} parent(s) x {settings.children} child(ren), "
        f"{settings.recovery_epochs} recovery epoch(s) each (teacher: {settings.teacher})"
    )
    floor = space.flops_ratio(space.smallest)
    if floor > settings.target_flops:
        ctx.log(
            f"lstm: warning: the smallest structure (every group at {space.round_to} channel(s) or whole, "
            f"--round_to) keeps {floor:.4f} of the FLOPs, above --target_flops={settings.target_flops:g}; "
            "the search will stop by --patience or --lstm_epochs instead"
        )
    search = LSTMSearch(
        model,
        space,
        data,
        ctx.strategy,
        settings,
        workdir=os.path.join(ctx.output_dir, WORKDIR),
        summaries=ctx.summaries,
        log=ctx.log,
    )
    best = search.run(resume=config.resume)
    with ctx.strategy.scope():
        structure = keras.models.clone_model(search.load(best))
        structure.set_weights(search.load(best).get_weights())
    search_seconds = time.perf_counter() - start + search.seconds_before  # a resumed run adds the killed ones
    retraining = (
        f"; retraining it on train + validation for {config.finetune_epochs} epoch(s)" if config.finetune_epochs else ""
    )
    ctx.log(
        f"lstm: best structure {best['id']} ({best['flops_ratio']:.4f} of the FLOPs, validation accuracy "
        f"{best['accuracy']:.4f}){retraining}"
    )
    smallest = min(record["flops_ratio"] for record in search.candidates.values())
    warning = missed_target_warning(best["flops_ratio"], floor, settings.target_flops, smallest)
    if warning:
        ctx.log(warning)
    retrain_seconds = retrain(
        structure, train_and_validation(data, config.batch_size, seed=config.seed), ctx, epochs=config.finetune_epochs, phase="retrain"
    )
    details = describe(search)
    details["search_loop_seconds"] = round(search.seconds, 3)
    write_plots(details, os.path.join(ctx.output_dir, "plots"), title=f"{model.name} on {config.dataset}")
    return MethodResult(
        model=structure, search_seconds=search_seconds, retrain_seconds=retrain_seconds, details=details
    )
