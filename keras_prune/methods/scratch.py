"""`scratch`: Pruning from Scratch (Wang et al., AAAI 2020).

1. Widen the architecture by `--expansion` (1.25) with a fresh random initialisation
   (the zoo's initialisers are the paper's), and put a learned gate in [0, 1] after the
   BatchNorm of every prunable channel group, before its activation.
2. Learn only the gates, on the frozen random weights, with BatchNorm normalising by
   batch statistics: loss = CE + balance_factor * (mean |gate| - r)^2, one global mean
   over all gates; gates clipped to [0, 1] after each step (Adam). Keep the gates of
   the best validation accuracy among epochs whose fraction of non-zero gates is <= r.
3. Rank all gates globally and bisect how many channels to keep so that the pruned
   structure's FLOPs, as a fraction of the **unexpanded** model's, meet `--target_flops`.
4. Build that structure fresh and train it from scratch (`--budget_train` scales the
   epochs by 1 / target_flops, "Scratch-B").

Only the internal channels of residual blocks are gated; the residual stream, and the
linear block outputs no addition ties (MobileNetV2's first and last projections), keep
their expanded width, as in the official code. `--prune_residual` gates those too, a tied
group with one shared gate. `--round_to` rounds the expanded widths and the kept counts
to multiples of its value (channel counts off a multiple of 8 are slow on CPUs).
"""

import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_prune.errors import PruneError
from keras_prune.export.report_io import assign_arrays, read_state, variable_arrays, write_state
from keras_prune.graph import analyze, count_flops, expand_channels, expanded_widths, prune_channels
from keras_prune.methods.base import MethodResult, retrain
from keras_prune.methods.budget import (
    check_reachable, global_budget, off_target_warning, round_count, why_nothing_to_prune,
)
from keras_prune.methods.gating import GatePlacement, gate_positions, gate_values, insert_gates, linear_outputs
from keras_prune.methods.l1 import select_groups

__all__ = ["GateLearner", "GateSelection", "learn_gates", "preflight", "run"]

CHECKPOINT = os.path.join("scratch", "gate_learning.npz")
"""Gate-learning state in the run folder, rewritten after every epoch (for --resume)."""

GATE_BN_MOMENTUM = 0.9
"""BatchNorm momentum of the random network while its gates learn: PyTorch's default, which the
official code runs with (the zoo's CIFAR ResNets and VGG are built with it already). The held-out
accuracy that selects the gates is measured with the moving statistics; at Keras' default 0.99
(keras.applications models, the zoo's ResNet-50 and conv4) they would still be three quarters
their initial values after an epoch of a small dataset (32 steps of mnist5k: 0.99^32 = 0.72), and
the network evaluated would not be the one trained. At 0.9 they follow the current gates within
a few dozen steps. Training normalises with batch statistics either way, so the gates' gradients
do not change."""


class GateLearner(keras.Model):
    """Trains only the gates of `net`; everything else stays at its random values.

    The forward pass runs in training mode, so BatchNormalization normalises with batch
    statistics (its moving averages still update; its gamma and beta are not trained).
    The regulariser's mean runs over all gates at once, not per layer.

    Args:
        net: the gated model.
        gates: the layers inside `net` that hold the gates (`ChannelGate`, or
            `GatedBatchNormalization` where a gate follows a BatchNorm of its own).
        balance_factor: lambda.
        sparsity: r, the target mean gate value.
    """

    def __init__(self, net, gates, *, balance_factor, sparsity, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.gate_layers = list(gates)
        self.balance_factor = float(balance_factor)
        self.sparsity = float(sparsity)
        self.cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.penalty_tracker = keras.metrics.Mean(name="penalty")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.penalty_tracker, self.accuracy]

    @property
    def gate_variables(self):
        return [layer.gate for layer in self.gate_layers]

    def call(self, inputs, training=False):
        return self.net(inputs, training=training)

    def penalty(self):
        every_gate = keras.ops.concatenate([keras.ops.abs(g) for g in self.gate_variables])
        return self.balance_factor * keras.ops.square(keras.ops.mean(every_gate) - self.sparsity)

    def train_step(self, data):
        x, y = data[0], data[1]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = self.net(x, training=True)
            # The Keras loss already divides by the replica count; the penalty is global,
            # so each replica contributes its share and the all-reduce sums them back.
            cross_entropy = self.cross_entropy(y, logits)
            penalty = self.penalty()
            loss = cross_entropy + penalty / replicas
            scaled = self.optimizer.scale_loss(loss)  # the loss scale under mixed precision, else as is
        variables = self.gate_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        self.loss_tracker.update_state(cross_entropy * replicas + penalty)
        self.penalty_tracker.update_state(penalty)
        self.accuracy.update_state(y, logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y = data[0], data[1]
        logits = self.net(x, training=False)
        penalty = self.penalty()
        self.loss_tracker.update_state(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True) + penalty)
        self.penalty_tracker.update_state(penalty)
        self.accuracy.update_state(y, logits)
        # Every metric, so that Keras reports their totals over the replicas (with a subset it
        # keeps the last step's logs: the replicas' own accuracies, averaged unweighted).
        return {m.name: m.result() for m in self.metrics}


def _state_arrays(learner):
    return {**variable_arrays(learner.net.weights, "net_"), **variable_arrays(learner.optimizer.variables, "opt_")}


def _restore_arrays(learner, arrays):
    assign_arrays(learner.net.weights, arrays, "net_")
    assign_arrays(learner.optimizer.variables, arrays, "opt_")


class GateSelection(keras.callbacks.Callback):
    """Keeps the best gates, logs them, and checkpoints gate learning after every epoch.

    The best gates are those of the highest validation accuracy among epochs whose
    fraction of non-zero gates is at most r; if no epoch qualifies, the last gates.
    """

    def __init__(self, learner, gates, sparsity, *, checkpoint=None, summaries=None, log=print):
        super().__init__()
        self.learner = learner
        self.gates = gates
        self.sparsity = sparsity
        self.checkpoint = checkpoint
        self.summaries = summaries
        self.log = log
        self.history = []
        self.best = None
        self.seconds_before = 0.0  # gate learning done by the interrupted process(es), from the checkpoint
        self._clock = time.perf_counter()

    def seconds(self):
        """Seconds of gate learning so far, the interrupted processes' included."""
        return self.seconds_before + time.perf_counter() - self._clock

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        values = gate_values(self.gates)
        every_gate = np.concatenate(list(values.values()))
        accuracy = float(logs.get("val_accuracy", logs.get("accuracy", 0.0)))
        record = {
            "epoch": epoch + 1,
            "accuracy": accuracy,
            "train_accuracy": float(logs.get("accuracy", 0.0)),
            "loss": float(logs.get("loss", 0.0)),
            "mean_gate": float(every_gate.mean()),
            "nonzero_fraction": float(np.mean(every_gate != 0)),
        }
        self.history.append(record)
        qualifies = record["nonzero_fraction"] <= self.sparsity
        if qualifies and (self.best is None or accuracy > self.best["accuracy"]):
            self.best = {"epoch": epoch + 1, "accuracy": accuracy, "gates": values}
        self.log(
            f"scratch: gate epoch {epoch + 1}: accuracy {accuracy:.4f}, mean gate "
            f"{record['mean_gate']:.3f}, non-zero {record['nonzero_fraction']:.3f} (r={self.sparsity:g})"
        )
        if self.summaries is not None:
            self.summaries.scalars(epoch + 1, **{f"gates/{k}": v for k, v in record.items() if k != "epoch"})
            self.summaries.histograms(epoch + 1, {f"gates/{k}": v for k, v in values.items()})
        if self.checkpoint:
            self.save(self.checkpoint, epoch + 1)

    def selected(self):
        """(gates, epoch): the best qualifying gates, else the last ones."""
        if self.best is not None:
            return self.best["gates"], self.best["epoch"]
        return gate_values(self.gates), len(self.history)

    def save(self, path, epochs_done):
        state = {
            "epochs_done": epochs_done,
            "history": self.history,
            "seconds": self.seconds(),
            "weight_paths": [w.path for w in self.learner.net.weights],  # the layout the arrays follow
            "fused_gates": True,  # written since gates live inside their BatchNorm (see `run`)
        }
        arrays = _state_arrays(self.learner)
        if self.best is not None:
            state["best"] = {"epoch": self.best["epoch"], "accuracy": self.best["accuracy"]}
            arrays.update({f"best/{k}": v for k, v in self.best["gates"].items()})
        write_state(path, state, arrays)

    def restore(self, path):
        """Loads a checkpoint written by `save`; returns the number of epochs done.

        Raises:
            PruneError: if the checkpoint's network is not this one (its weights differ).
        """
        state, arrays = read_state(path)
        paths = [w.path for w in self.learner.net.weights]
        if state.get("weight_paths", paths) != paths:
            raise PruneError(
                f"The gate-learning checkpoint {path} was written for another network (its weights "
                "differ from this run's): resume with the same --model and settings, or start a new "
                "run (--overwrite)."
            )
        _restore_arrays(self.learner, arrays)
        self.history = state["history"]
        self.seconds_before, self._clock = float(state.get("seconds", 0.0)), time.perf_counter()
        if "best" in state:
            gates = {k[len("best/") :]: v for k, v in arrays.items() if k.startswith("best/")}
            self.best = {**state["best"], "gates": gates}
        return state["epochs_done"]


def learn_gates(
    net,
    gates,
    data,
    strategy,
    *,
    epochs,
    balance_factor,
    sparsity,
    learning_rate=0.01,
    checkpoint=None,
    resume=False,
    summaries=None,
    log=print,
    verbose=2,
):
    """Stage 1: learns `gates` (`{group id: layer with a .gate}`) on `net`'s frozen weights.

    Sets the momentum of `net`'s BatchNorm layers to `GATE_BN_MOMENTUM` (and, with several
    replicas, synchronises their batch statistics): `net` is the throw-away gated network.

    Returns:
        `(values, selection)`: `{group id: gate values}` of the selected epoch, and the
        `GateSelection` callback (its `history` lists every epoch).

    Raises:
        PruneError: if every selected gate is zero (the regulariser won).
    """
    for layer in _batch_norms(net):
        layer.momentum = GATE_BN_MOMENTUM
        if strategy.num_replicas_in_sync > 1:
            layer.synchronized = True  # see _batch_norms
    with strategy.scope():
        learner = GateLearner(net, gates.values(), balance_factor=balance_factor, sparsity=sparsity)
        learner.compile(optimizer=keras.optimizers.Adam(learning_rate))
        learner.optimizer.build(learner.gate_variables)
    selection = GateSelection(learner, gates, sparsity, checkpoint=checkpoint, summaries=summaries, log=log)
    initial_epoch = 0
    if resume and checkpoint and os.path.exists(checkpoint):
        initial_epoch = selection.restore(checkpoint)
        log(f"scratch: resuming gate learning after epoch {initial_epoch} from {checkpoint}")
    if initial_epoch < epochs:
        learner.fit(
            data.train,
            validation_data=data.validation if data.info.num_validation else None,
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=[selection],
            verbose=verbose,
        )
    values, epoch = selection.selected()
    if not any(np.any(v > 0) for v in values.values()):
        raise PruneError(
            f"Every gate collapsed to zero during gate learning (epoch {epoch}): the regulariser "
            f"outweighs the task. Use a smaller --balance_factor (now {balance_factor:g}) or a "
            f"larger --gate_sparsity (now {sparsity:g})."
        )
    for group_id, layer in gates.items():
        layer.gate.assign(values[group_id].astype("float32"))
    return values, selection


def _batch_norms(model):
    """Every BatchNormalization layer of `model`, nested models included.

    Gate learning normalises with batch statistics (the method's premise); with several
    replicas each would see only its share of the batch, so `learn_gates` all-reduces the
    statistics across replicas (`synchronized`): N replicas then learn the gates one device learns.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            yield layer
        elif isinstance(layer, keras.Model):
            yield from _batch_norms(layer)


def retrain_epochs(config):
    """Epochs of training from scratch: `finetune_epochs`, scaled by 1/target with --budget_train."""
    if config.budget_train:  # rounded first: 33 / 0.55 is 59.99999999999999 in floating point
        return int(round(config.finetune_epochs / config.target_flops, 9))
    return config.finetune_epochs


def _gateable_groups(graph, config):
    """(the groups scratch prunes that a gate can follow, their gate placement, `{group id: why not}`).

    Without `--prune_residual`, block outputs stay whole as in the official code: the groups tied
    by residual additions, and the linear projections no addition ties (`linear_outputs`).
    """
    groups = select_groups(graph, prune_residual=config.prune_residual)
    placement, skipped = gate_positions(graph, groups)
    if not config.prune_residual:
        skipped.update(linear_outputs(graph, placement, [g for g in groups if g.id not in skipped]))
        placement = GatePlacement({path: gid for path, gid in placement.items() if gid not in skipped})
    return [g for g in groups if g.id not in skipped], placement, skipped


def preflight(model, config):
    """Raises a PruneError, before pre-training, for a budget below the expanded network's floor.

    The floor is counted on the unexpanded graph with the expanded widths (`count_flops(widths=)`):
    building the expanded network here would draw random weights and move every later draw of a
    seeded run.
    """
    graph = analyze(model)
    groups, _, skipped = _gateable_groups(graph, config)
    if not groups:
        return  # _gated_groups says why, on the expanded network
    _check_floor(model, graph, groups, config, skipped)
    if config.epochs < 1:
        raise PruneError(
            "scratch ranks channels by the gates it learns, and --epochs=0 learns none (every gate would stay "
            "at 1, ranking channels by position); pass --epochs >= 1 (the paper: 10)."
        )


def _check_floor(model, graph, groups, config, skipped=None):
    """The budget check of `preflight`, on the unexpanded graph with the expanded widths;
    `skipped` (`{group id: why it is not gated}`) is named in the error."""
    widths = expanded_widths(graph, config.expansion, round_to=config.round_to)
    widths.update({g.id: round_count(1, widths[g.id], config.round_to) for g in groups})
    floor = count_flops(model, graph=graph, widths=widths).total / count_flops(model, graph=graph).total
    if config.target_flops < floor:
        kept = "one channel" if config.round_to == 1 else f"{config.round_to} channels (--round_to)"
        levers = [f for f, free in (("--prune_residual", not config.prune_residual),
                                    ("a smaller --expansion", config.expansion > 1)) if free]
        hint = f"; {' or '.join(levers)} lowers it" if levers else ""
        ungated = ""
        if skipped:
            first_id, first_reason = next(iter(skipped.items()))
            ungated = (f" {len(skipped)} of the {len(groups) + len(skipped)} groups it may gate are not gated "
                       f"({first_id}: {first_reason}{'; ...' if len(skipped) > 1 else ''}).")
        raise PruneError(
            f"--target_flops={config.target_flops:g} is not reachable: the {config.expansion:g}x-wide "
            f"network scratch prunes, keeping {kept} in every gated group and its ungated groups "
            f"at their expanded width, still costs {floor:.4f} of the model's FLOPs.{ungated} "
            f"The smallest reachable value is {floor:.4f}{hint}."
        )


def _gated_groups(model, config):
    """The expanded network and its gated groups, once the budget is known to be reachable.

    Built here, not in `preflight` (which checks the same floor without building): building
    draws random weights, which would move every later draw of a seeded run.

    Returns (the original graph, reference FLOPs, expanded model, its graph, gated groups,
    gate placement, `{group id: why it is not gated}`).
    """
    original_graph = analyze(model)
    reference_flops = count_flops(model, graph=original_graph).total
    expanded = expand_channels(
        model, config.expansion, graph=original_graph, name=f"{model.name}_expanded", round_to=config.round_to
    )
    graph = analyze(expanded)
    groups, placement, skipped = _gateable_groups(graph, config)
    if not groups:
        reason = (
            "; ".join(sorted(set(skipped.values()))) if skipped else why_nothing_to_prune(graph)
        )
        raise PruneError(f"Model {model.name!r} has no channel group a gate can be placed on: {reason}")
    check_reachable(graph, groups, config.target_flops, reference_flops, round_to=config.round_to)
    return original_graph, reference_flops, expanded, graph, groups, placement, skipped


def run(model, data, ctx):
    """Prunes `model`'s architecture from scratch to `ctx.config.target_flops`."""
    config = ctx.config
    start = time.perf_counter()
    ctx.log("scratch: only the architecture is used; its weights are drawn afresh (the method's premise)")
    with ctx.strategy.scope():
        original_graph, reference_flops, expanded, graph, groups, placement, skipped = _gated_groups(model, config)
    for group_id, reason in skipped.items():
        ctx.log(f"scratch: group {group_id} is not gated ({reason}); it keeps every channel")
    checkpoint = os.path.join(ctx.output_dir, CHECKPOINT)
    with ctx.strategy.scope():
        gated, gates = insert_gates(
            graph, placement, name=f"{model.name}_gated", fuse=not _unfused_checkpoint(checkpoint, config)
        )
    ctx.log(
        f"scratch: learning {sum(g.size for g in groups)} gates in {len(groups)} groups on a "
        f"{config.expansion:g}x-wide random network for {config.epochs} epoch(s)"
    )
    values, selection = learn_gates(
        gated,
        gates,
        data,
        ctx.strategy,
        epochs=config.epochs,
        balance_factor=config.balance_factor,
        sparsity=config.gate_sparsity,
        learning_rate=config.gate_learning_rate,
        checkpoint=checkpoint,
        resume=config.resume,
        summaries=ctx.summaries,
        log=ctx.log,
        verbose=0 if config.verbose == 0 else 2,
    )
    # A resumed run adds the gate learning its interrupted process(es) did (in the checkpoint).
    before = selection.seconds_before
    gate_seconds = time.perf_counter() - start + before

    budget_start = time.perf_counter()
    budget = global_budget(
        graph, groups, values, config.target_flops, reference_flops=reference_flops, round_to=config.round_to
    )
    budget_seconds = time.perf_counter() - budget_start
    off_by = abs(budget["ratio"] - config.target_flops) / config.target_flops
    ctx.log(
        f"scratch: kept {budget['fraction']:.1%} of the gated channels -> {budget['ratio']:.4f} of the "
        f"unexpanded model's FLOPs (target {config.target_flops:g}, off by {off_by:.2%})"
    )
    warning = off_target_warning("scratch", budget["ratio"], config.target_flops, round_to=config.round_to)
    if warning:
        ctx.log(warning)
    build_start = time.perf_counter()
    with ctx.strategy.scope():
        structure = prune_channels(expanded, budget.keep, graph=graph, name=f"{model.name}_scratch", fresh=True)
    build_seconds = time.perf_counter() - build_start
    search_seconds = time.perf_counter() - start + before

    epochs = retrain_epochs(config)
    ctx.log(f"scratch: training the pruned structure from scratch for {epochs} epoch(s)")
    retrain_seconds = retrain(structure, data, ctx, epochs=epochs, phase="retrain")
    _plot_gate_channels(ctx, model, graph, groups, budget, reference_flops)
    original = {g.id: g.size for g in original_graph.groups}
    return MethodResult(
        model=structure,
        search_seconds=search_seconds,
        retrain_seconds=retrain_seconds,
        details={
            "gate_learning_seconds": round(gate_seconds, 3),
            "budget_search_seconds": round(budget_seconds, 3),
            "structure_build_seconds": round(build_seconds, 3),  # the three make up search_seconds
            "selected_epoch": selection.selected()[1],
            "gate_history": selection.history,
            "flops_ratio_after_search": round(budget["ratio"], 6),
            "kept_gate_fraction": round(budget["fraction"], 6),
            "retrain_epochs": epochs,
            "groups": [
                {
                    "group": g.id,
                    "original": original.get(g.id),
                    "expanded": g.size,
                    "kept": budget["counts"][g.id],
                    "mean_gate": round(float(values[g.id].mean()), 6),
                }
                for g in groups
            ],
            "groups_not_gated": len(graph.prunable_groups) - len(groups),
        },
    )


def _unfused_checkpoint(path, config):
    """Whether `--resume` continues a gate learning checkpointed before gates moved inside their
    BatchNorm (the network is then built as it was, so its weights line up with the arrays)."""
    return config.resume and os.path.exists(path) and not read_state(path)[0].get("fused_gates", False)


def _plot_gate_channels(ctx, model, graph, groups, budget, reference_flops):
    """Each gated group's expanded width against the channels its gates kept; the title's FLOPs are
    the budget's, against the unexpanded model."""
    from keras_prune.export.plots import plot_layer_channels

    layers = [
        {"name": g.id, "channels_before": g.size, "channels_after": budget["counts"][g.id]} for g in groups
    ]
    figure = {"layers": layers, "model": f"{model.name} x{ctx.config.expansion:g}", "method": "scratch gates",
              "dataset": ctx.config.dataset, "baseline": {"flops": reference_flops},
              "pruned": {"flops": budget["ratio"] * reference_flops}}
    plot_layer_channels(figure, os.path.join(ctx.output_dir, "plots", "gate_channels.png"))
