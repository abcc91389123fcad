"""Pruning from Scratch: gate placement, gate learning on frozen random weights, selection,
the global FLOPs budget against the unexpanded model, resume, and the run end to end."""

import dataclasses
import json
import os
import random

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_prune.data import load_dataset
from keras_prune.errors import PruneError
from keras_prune.graph import analyze, count_flops, expand_channels
from keras_prune.layers.gates import ChannelGate
from keras_prune.methods.gating import gate_positions, gate_values, insert_gates
from keras_prune.methods.l1 import select_groups
from keras_prune.methods.budget import min_reachable_ratio
from keras_prune.methods.scratch import (
    GateLearner, GateSelection, _gateable_groups, learn_gates, preflight, retrain_epochs,
)
from keras_prune.models import get_model
from keras_prune.pipeline import RunConfig, run

from conftest import tiny_resnet


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", batch_size=64, seed=0)


def _gated(model, *, prune_residual=False, initial_value=1.0, fuse=True):
    graph = analyze(model)
    groups = select_groups(graph, prune_residual=prune_residual)
    placement, skipped = gate_positions(graph, groups)
    gated, gates = insert_gates(graph, placement, initial_value=initial_value, fuse=fuse)
    return graph, groups, placement, skipped, gated, gates


def test_gates_sit_after_batchnorm_and_leave_the_residual_stream_alone():
    model = tiny_resnet()
    _, groups, placement, skipped, gated, gates = _gated(model, fuse=False)
    assert not skipped
    assert set(placement) == {"block_1_bn", "plain_bn"}, "internal and plain groups, never the residual stream"
    assert sorted(gates) == sorted(g.id for g in groups)
    assert len(select_groups(analyze(model), prune_residual=True)) == len(groups) + 1
    # The gate is called on the BN output and feeds the activation.
    gate = gates["block_1"]
    node = gate._inbound_nodes[0]
    assert node.parent_nodes[0].operation.name == "block_1_bn"
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(gated(x), model(x), atol=1e-6, err_msg="gates at 1 change nothing")


def test_prune_residual_shares_one_gate_across_the_tied_producers():
    model = tiny_resnet()
    _, groups, placement, _, gated, gates = _gated(model, prune_residual=True, fuse=False)
    residual = next(g for g in groups if len(g.producers) > 1)
    assert {p for p, gid in placement.items() if gid == residual.id} == {"stem_bn", "block_2_bn"}
    assert len(gates[residual.id]._inbound_nodes) == 2, "one layer, called after each producer"
    assert gates[residual.id].gate.shape == (residual.size,)
    assert len([layer for layer in gated.layers if isinstance(layer, ChannelGate)]) == len(groups)


def test_a_gate_after_its_own_batch_norm_is_built_into_it_and_learns_what_the_separate_gate_learns(digits):
    model, learned = tiny_resnet(), {}
    for layer in model.layers:  # offsets that matter (a fresh BatchNormalization's are 0)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.beta.assign(np.random.default_rng(0).uniform(-1, 1, layer.beta.shape).astype("float32"))
    x, y = (np.concatenate(parts) for parts in zip(*digits.train.take(5).as_numpy_iterator()))
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)  # the same batches for both
    for fuse in (False, True):
        _, groups, _, _, gated, gates = _gated(model, prune_residual=True, fuse=fuse)
        learner = GateLearner(gated, gates.values(), balance_factor=0.5, sparsity=0.2)
        learner.compile(optimizer=keras.optimizers.Adam(0.05))
        learner.fit(batches, epochs=1, verbose=0)
        learned[fuse] = gate_values(gates)
        kinds = {group_id: type(layer).__name__ for group_id, layer in gates.items()}
    residual = next(g for g in groups if len(g.producers) > 1)
    assert kinds == {residual.id: "ChannelGate", "block_1": "GatedBatchNormalization",
                     "plain": "GatedBatchNormalization"}, "a gate shared by two producers stays one layer"
    assert len([layer for layer in gated.layers if isinstance(layer, ChannelGate)]) == 1
    assert learned[True].keys() == learned[False].keys()
    for group_id, values in learned[True].items():
        assert np.any(values != 1.0), "the gates moved"
        np.testing.assert_allclose(values, learned[False][group_id], atol=1e-4, err_msg=group_id)


def test_gate_learning_scales_its_loss_as_the_optimizer_asks(digits):
    # An optimizer with a loss scale (as Keras wraps one under mixed precision) divides the
    # gradients by it: a step that does not scale its loss would move the gates 1024x less.
    x, y = next(digits.train.as_numpy_iterator())
    moved = []
    for factor in (None, 1024.0):
        keras.utils.set_random_seed(0)
        _, _, _, _, gated, gates = _gated(tiny_resnet())
        learner = GateLearner(gated, gates.values(), balance_factor=0.5, sparsity=0.2)
        learner.compile(optimizer=keras.optimizers.SGD(0.05, loss_scale_factor=factor))
        learner.train_on_batch(x, y)
        moved.append(np.concatenate([1.0 - v for v in gate_values(gates).values()]))
    assert np.abs(moved[0]).sum() > 0
    np.testing.assert_allclose(moved[1], moved[0], rtol=1e-3, atol=1e-6)


def test_only_gates_learn_batchnorm_uses_batch_statistics_and_gates_stay_in_unit_interval(digits):
    model = tiny_resnet()
    _, _, _, _, gated, gates = _gated(model)
    before = {w.path: np.array(w.numpy()) for w in gated.weights}
    learner = GateLearner(gated, gates.values(), balance_factor=0.5, sparsity=0.2)
    learner.compile(optimizer=keras.optimizers.Adam(0.5))
    learner.fit(digits.train.take(3), epochs=1, verbose=0)
    changed = {p for w in gated.weights if not np.array_equal(before[(p := w.path)], w.numpy())}
    gate_paths = {layer.gate.path for layer in gates.values()}
    moving = {w.path for w in gated.weights if "moving" in w.path}
    assert gate_paths <= changed
    assert changed - gate_paths - moving == set(), "conv kernels, BN gamma/beta and the head stay random"
    assert moving & changed, "training-mode BN updates its moving statistics"
    for values in gate_values(gates).values():
        assert values.min() >= 0.0 and values.max() <= 1.0


def test_held_out_evaluation_sees_the_network_gate_learning_trained_within_an_epoch_of_a_small_dataset(digits):
    """The held-out accuracy that selects the gates runs on the moving statistics. At Keras' usual
    BN momentum (0.99) 20 steps leave them 82% at their initial values, and the network evaluated
    predicts unlike the one trained (about a fifth of the predictions agree here)."""
    keras.utils.set_random_seed(0)
    _, _, _, _, gated, gates = _gated(tiny_resnet())
    small = dataclasses.replace(digits, train=digits.train.take(20))
    learn_gates(gated, gates, small, tf.distribute.get_strategy(), epochs=1, balance_factor=0.5, sparsity=0.2,
                log=lambda m: None, verbose=0)
    batches = [x for x, _ in small.train.take(5)]
    evaluated = [np.argmax(gated(x, training=False), axis=-1) for x in batches]
    trained = [np.argmax(gated(x, training=True), axis=-1) for x in batches]  # batch statistics, as in training
    agreement = np.mean(np.concatenate(evaluated) == np.concatenate(trained))
    assert agreement > 0.9


def test_penalty_is_the_squared_deviation_of_one_global_mean():
    model = tiny_resnet()
    _, _, _, _, gated, gates = _gated(model)
    first, second = gates.values()
    first.gate.assign(np.full(first.gate.shape, 1.0, "float32"))
    second.gate.assign(np.zeros(second.gate.shape, "float32"))
    learner = GateLearner(gated, gates.values(), balance_factor=0.5, sparsity=0.2)
    n1, n2 = first.gate.shape[0], second.gate.shape[0]
    assert n1 != n2, "unequal sizes tell a global mean from a mean of layer means"
    expected = 0.5 * (n1 / (n1 + n2) - 0.2) ** 2
    assert float(learner.penalty()) == pytest.approx(expected, rel=1e-6)


def test_selection_keeps_the_best_accuracy_among_sparse_enough_epochs():
    model = tiny_resnet()
    _, _, _, _, gated, gates = _gated(model)
    layer = next(iter(gates.values()))
    n = layer.gate.shape[0]
    total = sum(g.gate.shape[0] for g in gates.values())
    r = 3.5 / total  # epochs with up to 3 non-zero gates qualify
    learner = GateLearner(gated, gates.values(), balance_factor=0.5, sparsity=r)
    selection = GateSelection(learner, gates, r, log=lambda m: None)

    def epoch(index, nonzero, accuracy):
        values = np.zeros(n, "float32")
        values[:nonzero] = 0.3 + 0.01 * index
        for other in gates.values():
            other.gate.assign(np.zeros(other.gate.shape, "float32"))
        layer.gate.assign(values)
        selection.on_epoch_end(index, {"val_accuracy": accuracy})

    epoch(0, n, 0.99)  # dense: best accuracy but does not qualify
    epoch(1, 2, 0.60)
    epoch(2, 3, 0.70)
    epoch(3, 1, 0.65)
    values, chosen = selection.selected()
    assert chosen == 3
    assert np.count_nonzero(values[next(iter(gates))]) == 3
    fallback = GateSelection(learner, gates, 0.0, log=lambda m: None)
    fallback.on_epoch_end(0, {"val_accuracy": 0.9})
    assert fallback.selected()[1] == 1, "no epoch qualifies: the last gates"


def test_gates_collapsed_to_zero_raise_a_clear_error(digits):
    model = tiny_resnet()
    _, _, _, _, gated, gates = _gated(model, initial_value=0.0)
    strategy = tf.distribute.get_strategy()
    with pytest.raises(PruneError, match="--balance_factor"):
        learn_gates(gated, gates, digits, strategy, epochs=0, balance_factor=0.5, sparsity=0.2, log=lambda m: None)


def test_resume_continues_gate_learning_from_the_last_epoch(digits, tmp_path):
    checkpoint = str(tmp_path / "gates.npz")
    strategy = tf.distribute.get_strategy()
    small = dataclasses.replace(digits, train=digits.train.take(4))

    def start():
        keras.utils.set_random_seed(1)
        model = tiny_resnet()
        _, _, _, _, gated, gates = _gated(model)
        return gated, gates

    gated, gates = start()
    learn_gates(gated, gates, small, strategy, epochs=1, balance_factor=0.5, sparsity=0.2,
                checkpoint=checkpoint, log=lambda m: None, verbose=0)
    saved = {w.path: np.array(w.numpy()) for w in gated.weights}
    assert os.path.exists(checkpoint)

    keras.backend.clear_session(free_memory=False)
    gated, gates = start()
    messages = []
    selection_values, selection = learn_gates(
        gated, gates, small, strategy, epochs=1, balance_factor=0.5, sparsity=0.2,
        checkpoint=checkpoint, resume=True, log=messages.append, verbose=0,
    )
    assert any("resuming gate learning after epoch 1" in m for m in messages)
    assert len(selection.history) == 1, "nothing left to train: the checkpoint is the result"
    for w in gated.weights:
        if "gate" not in w.path:
            np.testing.assert_array_equal(w.numpy(), saved[w.path], err_msg=w.path)

    keras.backend.clear_session(free_memory=False)
    gated, gates = start()
    _, selection = learn_gates(
        gated, gates, small, strategy, epochs=2, balance_factor=0.5, sparsity=0.2,
        checkpoint=checkpoint, resume=True, log=lambda m: None, verbose=0,
    )
    assert [r["epoch"] for r in selection.history] == [1, 2]


def test_gate_learning_runs_under_mirrored_strategy(digits, mirrored):
    strategy = mirrored
    with strategy.scope():
        model = tiny_resnet()
        _, _, _, _, gated, gates = _gated(model)
    values, selection = learn_gates(
        gated, gates, digits, strategy, epochs=1, balance_factor=0.5, sparsity=0.2, learning_rate=0.05,
        log=lambda m: None, verbose=0,
    )
    assert len(selection.history) == 1
    assert any(np.any(v < 1.0) for v in values.values()), "the gates moved"


def test_held_out_accuracy_under_replicas_is_over_every_example(digits, mirrored):
    with mirrored.scope():
        _, _, _, _, gated, gates = _gated(tiny_resnet())
        learner = GateLearner(gated, gates.values(), balance_factor=0.5, sparsity=0.2)
        learner.compile(optimizer=keras.optimizers.Adam(0.01))
    held_out = digits.validation.unbatch().take(71).batch(64)  # replica shares of 32 and 32, then 4 and 3
    x, y = (np.concatenate(parts) for parts in zip(*held_out.as_numpy_iterator()))
    expected = np.mean(np.argmax(gated(x, training=False), axis=-1) == y)
    logs = learner.evaluate(held_out, return_dict=True, verbose=0)
    assert logs["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert set(logs) == {"loss", "penalty", "accuracy"}


def test_retrain_epochs_follow_the_budget_rule():
    config = RunConfig(method="scratch", model="m", output_dir="o", finetune_epochs=20, target_flops=0.4)
    assert retrain_epochs(config) == 20
    assert retrain_epochs(RunConfig(**{**config.as_dict(), "export": ("keras",), "budget_train": True})) == 50
    exact = dataclasses.replace(config, finetune_epochs=33, target_flops=0.55, budget_train=True)
    assert retrain_epochs(exact) == 60, "33 / 0.55 is 59.99999999999999 in floating point"


def test_a_resumed_gate_learning_counts_the_seconds_of_the_interrupted_process(tmp_path):
    model = tiny_resnet()
    _, _, _, _, gated, gates = _gated(model)
    learner = GateLearner(gated, gates.values(), balance_factor=0.5, sparsity=0.2)
    learner.compile(optimizer=keras.optimizers.Adam(0.01))
    learner.optimizer.build(learner.gate_variables)
    selection = GateSelection(learner, gates, 0.2, log=lambda m: None)
    selection.seconds_before = 40.0  # as if 40 s had been spent before
    selection.save(str(tmp_path / "ckpt.npz"), 2)
    resumed = GateSelection(learner, gates, 0.2, log=lambda m: None)
    assert resumed.restore(str(tmp_path / "ckpt.npz")) == 2
    assert 40.0 <= resumed.seconds_before < 41.0 and resumed.seconds() >= resumed.seconds_before


def _selection(fuse):
    _, _, _, _, gated, gates = _gated(tiny_resnet(), prune_residual=True, fuse=fuse)
    learner = GateLearner(gated, gates.values(), balance_factor=0.5, sparsity=0.2)
    learner.compile(optimizer=keras.optimizers.Adam(0.01))
    learner.optimizer.build(learner.gate_variables)
    return GateSelection(learner, gates, 0.2, log=lambda m: None)


def test_a_gate_checkpoint_of_another_layout_is_refused_and_an_unfused_one_resumes_unfused(tmp_path):
    from keras_prune.export.report_io import read_state, write_state
    from keras_prune.methods.scratch import _unfused_checkpoint

    path = str(tmp_path / "ckpt.npz")
    _selection(fuse=True).save(path, 1)
    with pytest.raises(PruneError, match="written for another network"):
        _selection(fuse=False).restore(path)
    config = RunConfig(method="scratch", model="m", output_dir=str(tmp_path), resume=True)
    assert not _unfused_checkpoint(path, config)
    state, arrays = read_state(path)  # as written before gates moved into their BatchNorm
    del state["fused_gates"], state["weight_paths"]
    write_state(path, state, arrays)
    assert _unfused_checkpoint(path, config)
    assert not _unfused_checkpoint(path, dataclasses.replace(config, resume=False))
    assert not _unfused_checkpoint(str(tmp_path / "none.npz"), config)


def test_scratch_without_gate_epochs_is_refused():
    from keras_prune.methods.scratch import preflight

    config = RunConfig(method="scratch", model="resnet20", output_dir="o", epochs=0)
    with pytest.raises(PruneError, match="--epochs=0 learns none"):
        preflight(get_model("resnet20", (28, 28, 1), 10), config)


def test_scratch_run_meets_the_budget_against_the_unexpanded_model(tmp_path, monkeypatch):
    import keras_prune.export.plots as plots

    figures, plot = {}, plots.plot_layer_channels

    def recorded(report, path):
        figures[os.path.basename(path)] = report
        plot(report, path)

    monkeypatch.setattr(plots, "plot_layer_channels", recorded)
    keras.utils.set_random_seed(0)
    path = tmp_path / "tiny.keras"
    base = tiny_resnet(width=16)
    base.save(path)
    out = tmp_path / "run"
    config = RunConfig(
        method="scratch",
        model=str(path),
        output_dir=str(out),
        dataset="digits",
        target_flops=0.7,
        pretrain_epochs=0,
        finetune_epochs=1,
        epochs=2,
        batch_size=64,
        gate_learning_rate=0.05,
        latency_repeats=2,
        export=("keras",),
        verbose=0,
    )
    report = run(config)
    # One channel of this toy's internal group moves the FLOPs by ~5%; within 1% is
    # checked on real models in test_budget.py and measured in benchmarks/.
    assert abs(report["flops_ratio"] - 0.7) <= 0.05 * 0.7
    details = report["method_details"]
    assert [r["epoch"] for r in details["gate_history"]] == [1, 2]
    parts = ("gate_learning_seconds", "budget_search_seconds", "structure_build_seconds")
    assert sum(details[k] for k in parts) == pytest.approx(report["search_seconds"], abs=0.01)
    expanded = {g["group"]: g for g in details["groups"]}
    assert expanded["block_1"]["expanded"] == 25 and expanded["block_1"]["original"] == 20
    assert all(1 <= g["kept"] <= g["expanded"] for g in details["groups"])
    # The residual stream keeps its expanded width (20 = 1.25 x 16).
    pruned = keras.models.load_model(out / "model.keras")
    assert pruned.get_layer("stem").filters == 20
    assert count_flops(pruned).total == report["pruned"]["flops"]
    assert (out / "plots" / "gate_channels.png").exists()
    gates = figures["gate_channels.png"]  # its title names the data and the budget's FLOPs
    assert gates["dataset"] == "digits" and gates["baseline"]["flops"] == report["baseline"]["flops"]
    assert gates["pruned"]["flops"] / gates["baseline"]["flops"] == pytest.approx(details["flops_ratio_after_search"])
    saved = json.loads((out / "report.json").read_text())
    assert saved["method"] == "scratch"
    events = [os.path.join(d, f) for d, _, files in os.walk(out / "tensorboard") for f in files
              if f.startswith("events")]
    tags = {v.tag for path in events for e in tf.compat.v1.train.summary_iterator(path) for v in e.summary.value}
    assert {f"gates/{g['group']}" for g in details["groups"]} <= tags, "a gate histogram per group, every epoch"


def test_an_impossible_budget_names_the_smallest_reachable_value(tmp_path):
    path = tmp_path / "tiny.keras"
    tiny_resnet(width=16).save(path)
    config = RunConfig(
        method="scratch", model=str(path), output_dir=str(tmp_path / "run"), dataset="digits",
        target_flops=0.05, pretrain_epochs=0, epochs=0, finetune_epochs=0, latency_repeats=2, verbose=0,
    )
    with pytest.raises(PruneError, match="smallest reachable value is"):
        run(config)


def test_an_impossible_budget_names_the_groups_left_ungated():
    # Caffe's LeNet-5 has no activation after its convs: they are linear outputs, left whole at 1.25x.
    model = get_model("lenet5", (28, 28, 1), 10)
    config = RunConfig(method="scratch", model="lenet5", output_dir="o", target_flops=0.5)
    with pytest.raises(PruneError, match=r"2 of the 3 groups it may gate are not gated \(.*a linear projection.*--prune_residual"):
        preflight(model, config)


def test_a_budget_below_the_expanded_floor_fails_before_pre_training(tmp_path, monkeypatch):
    import keras_prune.pipeline as pipeline

    def must_not_train(*args, **kwargs):
        raise AssertionError("the dense model was trained before the budget was checked")

    monkeypatch.setattr(pipeline, "train_classifier", must_not_train)
    model = get_model("resnet20", (28, 28, 1), 10)
    unexpanded = min_reachable_ratio(analyze(model), select_groups(analyze(model), prune_residual=False))
    floor = _expanded_floor(model, RunConfig(method="scratch", model="m", output_dir="o"))
    assert floor > unexpanded + 0.01, "the unexpanded floor would not catch this budget"
    target = round((floor + unexpanded) / 2, 4)
    config = RunConfig(method="scratch", model="resnet20", output_dir=str(tmp_path / "run"), dataset="mnist5k",
                       target_flops=target, verbose=0)
    with pytest.raises(PruneError, match=f"--target_flops={target:g} is not reachable.*value is {floor:.4f}"):
        run(config)
    assert not (tmp_path / "run" / "flags.txt").exists(), "the folder stays free for the corrected command"


def _expanded_floor(model, config):
    """The floor check_reachable finds on the built expanded network (what `preflight` must match)."""
    expanded = expand_channels(model, config.expansion, round_to=config.round_to)
    graph = analyze(expanded)
    groups, _, _ = _gateable_groups(graph, config)
    return min_reachable_ratio(graph, groups, count_flops(model).total, round_to=config.round_to)


@pytest.mark.parametrize("prune_residual", [False, True])
def test_mobilenet_v2_block_outputs_stay_whole_as_in_the_official_code(prune_residual):
    graph = analyze(keras.applications.MobileNetV2((32, 32, 3), alpha=0.35, weights=None, classes=10))
    config = RunConfig(method="scratch", model="m", output_dir="o", prune_residual=prune_residual)
    groups, placement, skipped = _gateable_groups(graph, config)
    gated = {path for path in placement}
    linear = {"expanded_conv_project_BN", "block_16_project_BN"}  # no residual addition ties these two
    assert {"bn_Conv1", "block_1_expand_BN", "block_16_expand_BN", "Conv_1_bn"} <= gated
    if prune_residual:
        assert linear <= gated and not skipped
    else:
        assert not gated & linear and not any("project" in path for path in gated)
        assert len(skipped) == 2 and all("linear projection" in why for why in skipped.values())


@pytest.mark.parametrize("name", ["resnet20", "vgg16", "mobilenet_v2"])
@pytest.mark.parametrize("round_to", [1, 8])
@pytest.mark.parametrize("prune_residual", [False, True])
def test_preflight_floor_is_the_built_expanded_networks(name, round_to, prune_residual):
    model = get_model(name, (32, 32, 3), 10)
    config = RunConfig(method="scratch", model=name, output_dir="o", round_to=round_to,
                       prune_residual=prune_residual)
    floor = _expanded_floor(model, config)
    keras.utils.set_random_seed(7)
    draws = (keras.random.uniform((3,)).numpy(), random.random())
    for target, reachable in ((floor + 1e-4, True), (floor - 1e-4, False)):
        keras.utils.set_random_seed(7)
        if reachable:
            preflight(model, dataclasses.replace(config, target_flops=target))
        else:
            with pytest.raises(PruneError, match=f"smallest reachable value is {floor:.4f}"):
                preflight(model, dataclasses.replace(config, target_flops=target))
        # Building the expanded network would move a seeded run's later draws; preflight must not.
        assert (keras.random.uniform((3,)).numpy().tolist(), random.random()) == (draws[0].tolist(), draws[1])


def test_expansion_widens_every_group_but_inputs_and_outputs():
    model = tiny_resnet(width=16)
    wide = expand_channels(model, 1.25)
    assert wide.get_layer("stem").filters == 20
    assert wide.get_layer("block_1").filters == 25
    assert wide.get_layer("plain").filters == 40
    assert wide.output_shape == model.output_shape
    assert count_flops(wide).total > 1.5 * count_flops(model).total


def test_expansion_with_round_to_rounds_widths_to_the_nearest_multiple_never_below_the_original():
    model = tiny_resnet(width=8)  # stem 8 (-> 10), block_1 12 (-> 15), plain 16 (-> 20)
    wide = expand_channels(model, 1.25, round_to=8)
    assert [wide.get_layer(n).filters for n in ("stem", "block_1", "plain")] == [8, 16, 24]
    assert wide.output_shape == model.output_shape


def test_round_to_makes_every_kept_count_a_multiple_of_it(tmp_path):
    keras.utils.set_random_seed(0)
    path = tmp_path / "tiny.keras"
    tiny_resnet(width=16).save(path)
    out = tmp_path / "run"
    config = RunConfig(
        method="scratch", model=str(path), output_dir=str(out), dataset="digits", target_flops=0.7,
        pretrain_epochs=0, finetune_epochs=0, epochs=1, batch_size=64, latency_repeats=2, export=("keras",),
        round_to=8, verbose=0,
    )
    report = run(config)
    groups = report["method_details"]["groups"]
    assert {g["group"]: g["expanded"] for g in groups} == {"block_1": 24, "plain": 40}
    assert all(g["kept"] % 8 == 0 for g in groups), groups
    pruned = keras.models.load_model(out / "model.keras")
    assert pruned.get_layer("stem").filters == 24  # the unpruned residual stream: 16 x 1.25 = 20 -> 24
    assert abs(report["flops_ratio"] - 0.7) <= 0.15 * 0.7


@pytest.mark.parametrize("size,factor,expected", [(10, 2.0, 16), (11, 2.0, 16), (18, 2.0, 32), (3, 1.25, 4), (12, 1.0, 12)])
def test_rounded_expansion_stays_within_twice_the_original_and_leaves_factor_one_alone(size, factor, expected):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(size, 3, name="conv")(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))
    wide = expand_channels(keras.Model(inputs, outputs), factor, round_to=8)
    assert wide.get_layer("conv").filters == expected
