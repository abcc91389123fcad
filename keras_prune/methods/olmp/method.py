"""`olmp.run`: the method's driver (convert, run the loop, report); see the package docstring."""

import os

from keras_prune.errors import PruneError
from keras_prune.methods.base import MethodResult
from keras_prune.methods.olmp.dns import DNSLayers, prunable_layers, to_masked
from keras_prune.methods.olmp.engine import MaskedSGD
from keras_prune.methods.olmp.loop import OLMPLoop
from keras_prune.methods.olmp.report import describe, write_plots
from keras_prune.methods.olmp.search import distributed_tuning
from keras_prune.methods.olmp.settings import OLMPSettings

__all__ = ["WORKDIR", "preflight", "run"]

WORKDIR = "olmp"
"""The method's folder inside the run folder: checkpoint.npz and tuner/."""


def preflight(model, config):
    """Raises a PruneError, before pre-training, for invalid `olmp_*` settings, a model with fewer
    than two top-level Dense or Conv2D layers, or Keras Tuner's distributed mode without the tuner."""
    settings = OLMPSettings.from_config(config)
    prunable = prunable_layers(model)
    if len(prunable) < 2:  # NCS runs when at least two layers are triggered (the paper's len(tmp_ind) > 1)
        raise PruneError(
            f"olmp searches the thresholds of several layers together, and model {model.name!r} has one "
            f"prunable top-level layer ({prunable[0]!r}): NCS would never run. Prune it with a fixed "
            "magnitude threshold instead, or give a model with two or more Dense/Conv2D layers."
        )
    if distributed_tuning() and not settings.use_tuner:
        raise PruneError(
            "Keras Tuner's distributed mode (KERASTUNER_ORACLE_IP is set) shares OLMP's NCS calls through "
            "the tuner; with --noolmp_tuner every process would run each whole search alone and overwrite "
            "the others' state files. Drop --noolmp_tuner, or unset the KERASTUNER_* variables."
        )


def emptied_layers_warning(details):
    """A warning line if a pruned layer kept no weight of its kernel (`describe`'s details; a bias
    alone does not depend on the input), else None."""
    emptied = [layer["layer"] for layer in details["layers"] if layer["kernel_kept"] == 0]
    if not emptied:
        return None
    return (
        f"olmp: warning: {', '.join(emptied)} kept no weight, so nothing passes through: the model's "
        "output no longer depends on its input. The accuracy constraint (--olmp_delta) allowed it, "
        "as it does when the model starts near chance: prune a trained model."
    )


def run(model, data, ctx):
    """Prunes `model`'s weights with OLMP; returns the masked, retrained model and its report.

    Raises:
        PruneError: for invalid `olmp_*` settings or a model with fewer than two Dense/Conv2D layers.
    """
    settings = OLMPSettings.from_config(ctx.config)
    strategy = ctx.strategy
    with strategy.scope():
        masked, names = to_masked(model)
    dns = DNSLayers(masked, names)
    trainer = MaskedSGD(
        masked,
        dns,
        strategy,
        learning_rate=settings.learning_rate,
        lr_policy=settings.lr_policy,
        weight_decay=settings.weight_decay,
    )
    loop = OLMPLoop(
        trainer,
        dns,
        data.train,
        settings,
        validation=data.validation,
        workdir=os.path.join(ctx.output_dir, WORKDIR),
        # In Keras Tuner's distributed mode every process searches in the chief's projects.
        tuner_dir=os.path.join(os.path.abspath(ctx.config.output_dir), WORKDIR, "tuner") if distributed_tuning() else None,
        summaries=ctx.summaries,
        log=ctx.log,
    )
    ctx.log(
        f"olmp: {len(names)} layers {names}, {dns.total:,} weights + biases; {settings.iterations} "
        f"iterations, masks frozen at {settings.prune_stop}, NCS every {settings.prune_interval} "
        f"(N={settings.population}, budget {settings.budget}, delta {settings.delta:g} on the "
        + ("training batch)" if settings.constraint == "batch" else f"next {settings.constraint_examples} validation examples)")
    )
    loop.run(resume=ctx.config.resume)
    details = describe(loop, ctx.output_dir)
    ratio = details["compression_ratio"]
    ctx.log(
        f"olmp: compression {'infinite' if ratio is None else f'{ratio}x'} ({details['nonzero_params']:,} of "
        f"{details['pruned_layer_params']:,} weights + biases kept) after {details['ncs_calls']} NCS call(s)"
    )
    warning = emptied_layers_warning(details)
    if warning:
        ctx.log(warning)
    write_plots(details, os.path.join(ctx.output_dir, "plots"), title=f"{model.name} on {ctx.config.dataset}")
    return MethodResult(
        model=masked,
        search_seconds=loop.search_seconds,
        retrain_seconds=loop.train_seconds,
        details=details,
    )
