"""`rnp`'s driver: build the runtime backbone, train it with its decision network, report, export."""

import os
import time

import keras
import numpy as np

from keras_prune.errors import PruneError
from keras_prune.export.report_io import save_keras
from keras_prune.graph import count_params
from keras_prune.methods.base import MethodResult
from keras_prune.methods.rnp import report
from keras_prune.methods.rnp.backbone import RuntimeBackbone, check_head, reorder_channels, split_chain
from keras_prune.methods.rnp.serving import RNPServing, export_saved_model, serving_latency
from keras_prune.methods.rnp.settings import settings_from_config
from keras_prune.methods.rnp.training import RNPTrainer

__all__ = ["CHECKPOINT", "build", "preflight", "run", "train"]

CHECKPOINT = os.path.join("rnp", "training.npz")
"""Training state in the run folder, rewritten after the warm-up and after every round."""


def build(model, strategy, settings, *, seed=0):
    """A `RNPTrainer` over a reordered copy of `model` (the input model is left as it is)."""
    with strategy.scope():
        net = keras.models.clone_model(model)
        net.set_weights(model.get_weights())
        backbone = RuntimeBackbone(net, settings.groups)
    reorder_channels(backbone, settings.order)
    return RNPTrainer(backbone, strategy, settings, seed=seed)


def full_batches(train, batch_size):
    """The training split as an endless stream of full batches (epochs reshuffled, none dropped).

    An epoch's short last batch would leave a replica an empty share with several replicas (one
    image on two replicas), and BatchNorm's training-mode moments over no rows are NaN, which
    the mirrored update would average into every replica's moving statistics."""
    return train.repeat().unbatch().batch(batch_size, drop_remainder=True)


def train(trainer, data, ctx):
    """Warm-up, alpha calibration and the alternating rounds, resumable per round.

    Returns the seconds of training the interrupted processes had checkpointed (0 for a new run).
    """
    settings, log = trainer.settings, ctx.log
    checkpoint = os.path.join(ctx.output_dir, CHECKPOINT)
    rounds_done = None
    if ctx.config.resume and os.path.exists(checkpoint):
        rounds_done = trainer.restore(checkpoint)
        log(f"rnp: resumed after round {rounds_done} of {settings.rounds} from {checkpoint}")
    before, clock = trainer.seconds, time.perf_counter()

    def save(rounds):
        trainer.seconds = before + time.perf_counter() - clock
        trainer.save(checkpoint, rounds)

    batches = iter(full_batches(data.train, ctx.config.batch_size))
    if rounds_done is None:
        losses = [trainer.backbone_step(*next(batches), random_actions=True)[0] for _ in range(settings.warmup_steps)]
        if losses:
            log(f"rnp: warm-up, {len(losses)} steps under random group counts, loss {np.mean(losses[-10:]):.4f}")
        if trainer.alpha is None:
            trainer.alpha = trainer.calibrate_alpha([next(batches) for _ in range(5)])
            log(f"rnp: alpha = {trainer.alpha:.4g} (mean alpha * L_cls = 1 under random decisions)")
        rounds_done = 0
        save(rounds_done)
    for round_index in range(rounds_done, settings.rounds):
        trainer.new_round()
        q = [trainer.decision_step(*next(batches)) for _ in range(settings.decision_steps)]
        ce = [trainer.backbone_step(*next(batches)) for _ in range(settings.backbone_steps)]
        record = {"round": round_index + 1}
        for key in ("q_loss", "reward", "groups", "epsilon"):
            record[key] = float(np.mean([s[key] for s in q])) if q else None
        record["backbone_loss"] = float(np.mean([loss for loss, _ in ce])) if ce else None
        record["backbone_groups"] = float(np.mean([a.mean() + 1 for _, a in ce])) if ce else None
        trainer.history.append(record)
        log("rnp: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items() if v is not None))
        ctx.summaries.scalars(round_index + 1, **{f"rnp/{k}": v for k, v in record.items() if k != "round"})
        save(round_index + 1)
    return before


def _check_export(config):
    if "tflite" in config.export:
        raise PruneError("rnp exports saved_model and keras only: its per-input branches have no TFLite form; "
                         "drop --export=tflite.")


def preflight(model, config):
    """Raises a PruneError, before any training, for a model RNP cannot run on or an export it cannot write."""
    _check_export(config)
    settings = settings_from_config(config)
    *_, head, _ = split_chain(model, settings.groups)
    check_head(head, settings.order)


def run(model, data, ctx):
    """Trains RNP on `model` and hands back its operating points, export and stats."""
    config = ctx.config
    settings = settings_from_config(config)
    _check_export(config)
    start = time.perf_counter()
    trainer = build(model, ctx.strategy, settings, seed=config.seed)
    backbone = trainer.backbone
    ctx.log(
        f"rnp: {backbone.steps} prunable convs x {settings.groups} groups "
        f"({', '.join(str(c) for c in backbone.channels)} channels), decision net "
        f"{trainer.decision.count_params():,} params"
    )
    trained_before = train(trainer, data, ctx)
    search_seconds = time.perf_counter() - start + trained_before  # a resumed run adds the killed ones

    biases = sorted(set(settings.operating_points) | {settings.flops_bias})
    points, per_input = report.operating_points(trainer, data.test, biases)
    for point in points:
        cost = (f"{point['speedup']:.2f}x fewer MACs per input" if point["speedup"] >= 1
                else f"{1 / point['speedup']:.2f}x more MACs per input than the dense model (the decision net's included)")
        ctx.log(f"rnp: flops_bias {point['flops_bias']:g}: accuracy {point['accuracy']:.4f}, {cost}")
    default = next(p for p in points if p["flops_bias"] == settings.flops_bias)
    serving = RNPServing(backbone, trainer.decision, settings.flops_bias)

    def stats(data, strategy, repeats):
        params = count_params(backbone.model)
        extra = int(trainer.decision.count_params())
        latency = serving_latency(serving.serve, data.test_images(), repeats=repeats)
        return {
            "accuracy": default["accuracy"],
            "flops": default["mean_flops"],
            "params": params.total + extra,
            "nonzero_params": params.nonzero + extra,
            "latency_ms": latency,
        }

    def export(output_dir, formats):
        written = {}
        if "saved_model" in formats:
            written["saved_model"] = export_saved_model(serving, os.path.join(output_dir, "saved_model"))
        if "keras" in formats:
            written["keras"] = save_keras(backbone.model, os.path.join(output_dir, "model.keras"))
            written["decision_net"] = save_keras(trainer.decision, os.path.join(output_dir, "rnp", "decision_net.keras"))
        return written

    def layers(rows):
        """Each layer the decisions scale, at its mean over the test inputs at the default bias (the
        table's other layers always run whole); the channels after are the mean computed."""
        means = backbone.mean_layer_costs(per_input[settings.flops_bias]["actions"])
        for row in rows:
            if row["name"] in means:
                channels, flops = means[row["name"]]
                row["flops_after"] = round(flops)
                if channels is not None:
                    row["channels_after"] = round(channels, 2)
        return rows

    every_group = report.evaluate(trainer, data.test, -1e9)
    dense = {"flops": backbone.full_flops, "accuracy": float(every_group["correct"].mean())}
    plots = report.plots(points, per_input, settings.flops_bias, dense, data.test, data.info, ctx.output_dir)
    details = {
        "groups": settings.groups,
        "order": settings.order,
        "prunable_convs": [stage[0].name for stage in backbone.stages],
        "group_boundaries": backbone.boundaries,
        "alpha": trainer.alpha,
        "penalty": settings.penalty,
        "flops_bias": settings.flops_bias,
        "decision_net_macs": trainer.decision.macs_per_sample(),
        "operating_points": points,
        "every_group_accuracy": dense["accuracy"],
        "plots": plots,
        "history": trainer.history,
        "export": "saved_model/ signatures: serve(images) and serve_with_bias(images, flops_bias) -> "
                  "logits, actions (groups computed per prunable conv); batch 1 computes only the chosen groups",
    }
    return MethodResult(
        model=backbone.model,
        search_seconds=search_seconds,
        details=details,
        stats=stats,
        export=export,
        layers=layers,
    )
