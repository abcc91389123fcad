"""Where to Prune (`lstm`): the controller, the descriptors, REINFORCE, the reward, the cached
and resumable search, distillation under MirroredStrategy, and the run end to end."""

import dataclasses
import json
import os
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from keras_prune.cli.flags import define_flags
from keras_prune.data import load_dataset
from keras_prune.errors import PruneError
from keras_prune.graph import analyze, count_flops
from keras_prune.methods.lstm.controller import KEEP, PRUNE, PruningController, reinforce_step
from keras_prune.methods.lstm.method import missed_target_warning, train_and_validation
from keras_prune.methods.lstm.report import describe, sensitivity
from keras_prune.methods.lstm.search import CHECKPOINT, LSTMSearch
from keras_prune.methods.lstm.settings import LSTMSettings, reward
from keras_prune.methods.lstm.structure import DESCRIPTOR_FEATURES, StructureSpace, structure_key
from keras_prune.pipeline import RunConfig, run
from keras_prune.training.distill import Distiller, distill

from conftest import tiny_resnet


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", batch_size=64, seed=0)


def _descriptors(steps=4, features=len(DESCRIPTOR_FEATURES)):
    return np.random.default_rng(1).random((steps, features)).astype("float32")



def test_a_group_made_in_parts_by_a_concatenation_stays_out_of_the_structure_space():
    """Add(Concatenate(a, b), c): a count per group cannot express "one of b's channels too"."""
    x = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", name="a")(x)
    b = keras.layers.Conv2D(8, 3, padding="same", name="b")(x)
    c = keras.layers.Conv2D(16, 3, padding="same", name="c")(x)
    y = keras.layers.Add()([keras.layers.Concatenate()([a, b]), c])
    y = keras.layers.Conv2D(6, 3, padding="same", name="d")(y)
    y = keras.layers.Conv2D(6, 3, padding="same", name="e")(y)
    model = keras.Model(x, keras.layers.Dense(10, name="head")(keras.layers.GlobalAveragePooling2D()(y)))
    graph = analyze(model)
    space = StructureSpace(graph, prune_rate=0.5, prune_residual=True)
    assert "a" in graph.segments and space.ids == ["d", "e"]
    assert 0 < space.flops_ratio(space.smallest) < 1

def test_controller_logits_have_one_keep_prune_pair_per_layer():
    controller = PruningController(8)
    logits = controller((np.zeros((3, 5, 9), "float32"), np.zeros((3, 5), "int32")))
    assert tuple(logits.shape) == (3, 5, 2)


def test_sampling_is_binary_and_replayed_by_the_same_generator_state():
    controller = PruningController(8)
    descriptors = _descriptors()
    first = controller.sample(descriptors, 16, np.random.default_rng(7))
    again = controller.sample(descriptors, 16, np.random.default_rng(7))
    assert first.shape == (16, 4) and set(np.unique(first)) <= {KEEP, PRUNE}
    np.testing.assert_array_equal(first, again)
    assert 0 < first.mean() < 1  # an untrained policy is close to a fair coin


def test_rollout_and_teacher_forced_logits_are_the_same_policy():
    """`sample` steps the LSTM cell by hand; `call` runs the RNN: every step's probability agrees."""
    controller = PruningController(8, seed=0)
    descriptors = _descriptors()
    forced = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1]], "int32")
    actions, p_prune = controller.rollout(descriptors, 3, lambda step, p: forced[:, step] == PRUNE)
    np.testing.assert_array_equal(actions, forced)
    expected = controller.prune_probabilities(np.repeat(descriptors[None], 3, axis=0), forced)
    np.testing.assert_allclose(p_prune, keras.ops.convert_to_numpy(expected), atol=1e-5)
    # The history matters: two sequences that differ at step 0 see different step-1 policies.
    assert abs(p_prune[0, 1] - p_prune[1, 1]) > 1e-6
    # And sampling draws with those probabilities.
    many = controller.sample(descriptors, 4000, np.random.default_rng(1))
    assert abs(many[:, 0].mean() - p_prune[0, 0]) < 0.03


def test_log_prob_gradient_reaches_every_controller_weight():
    controller = PruningController(8)
    descriptors = np.repeat(_descriptors()[None], 5, axis=0)
    actions = controller.sample(descriptors[0], 5, np.random.default_rng(0))
    with tf.GradientTape() as tape:
        log_prob, entropy = controller.log_probs_and_entropy(descriptors, actions)
        total = keras.ops.sum(log_prob)
    grads = tape.gradient(total, controller.trainable_variables)
    assert tuple(log_prob.shape) == (5,) and np.all(keras.ops.convert_to_numpy(log_prob) < 0)
    assert np.all(keras.ops.convert_to_numpy(entropy) <= np.log(2) + 1e-6)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    assert all(np.abs(g.numpy()).sum() > 0 for g in grads)


def test_reinforce_with_a_reward_for_pruning_raises_the_prune_probability():
    controller = PruningController(8)
    optimizer = keras.optimizers.Adam(0.01)
    descriptors = _descriptors()
    batch = np.repeat(descriptors[None], 16, axis=0)
    rng = np.random.default_rng(0)

    def mean_prune_probability():
        probe = np.zeros((16, 4), "int32")
        return float(np.mean(keras.ops.convert_to_numpy(controller.prune_probabilities(batch, probe))))

    before = mean_prune_probability()
    for _ in range(10):
        actions = controller.sample(descriptors, 16, rng)
        rewards = actions.sum(axis=1).astype(float)  # each prune decision earns 1
        reinforce_step(controller, optimizer, batch, actions, rewards - rewards.mean())
    assert mean_prune_probability() > before + 0.05


def test_controller_round_trips_through_keras_saving(tmp_path):
    controller = PruningController(6, seed=3, name="ctl")
    inputs = (_descriptors()[None], np.array([[0, 1, 1, 0]], "int32"))
    expected = keras.ops.convert_to_numpy(controller(inputs))
    assert controller.get_config()["hidden_units"] == 6 and controller.get_config()["seed"] == 3
    controller.save(tmp_path / "controller.keras")
    loaded = keras.models.load_model(tmp_path / "controller.keras")
    assert isinstance(loaded, PruningController) and loaded.hidden_units == 6 and loaded.seed == 3
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(inputs)), expected, atol=1e-6)


def test_descriptors_describe_each_searched_group_in_model_order():
    space = StructureSpace(analyze(tiny_resnet(width=8)), prune_rate=0.2)
    assert space.ids == ["block_1", "plain"]  # the tied residual stream is left whole
    rows = space.descriptors(space.original)
    assert rows.shape == (2, len(DESCRIPTOR_FEATURES)) and rows.dtype == np.float32
    column = {name: rows[:, i] for i, name in enumerate(DESCRIPTOR_FEATURES)}
    np.testing.assert_allclose(column["position"], [0, 1])
    np.testing.assert_allclose(column["kept_fraction"], [1, 1])
    np.testing.assert_allclose(column["stride"], [0.5, 1.0])  # `plain` has stride 2
    assert np.all(column["flops_saved_if_pruned"] > 0) and np.all(column["can_prune"] == 1)
    smaller = space.descriptors((1, 16))
    assert smaller[0, DESCRIPTOR_FEATURES.index("kept_fraction")] == pytest.approx(1 / 12)
    assert smaller[0, DESCRIPTOR_FEATURES.index("can_prune")] == 0


def test_a_prune_decision_removes_the_rate_of_current_channels_but_never_the_last():
    space = StructureSpace(analyze(tiny_resnet(width=8)), prune_rate=0.2)
    assert space.child((12, 16), [PRUNE, KEEP]) == (9, 16)  # ceil(0.2 * 12) = 3
    assert space.child((1, 2), [PRUNE, PRUNE]) == (1, 1)
    full = count_flops(space.graph.model).total
    assert space.flops_ratio(space.original) == 1.0
    assert space.flops_ratio((9, 16)) < 1.0 and space.full_flops == full
    assert structure_key((9, 16)) == "9-16"


def test_with_round_to_a_prune_decision_lands_on_an_allowed_count_and_always_cuts():
    space = StructureSpace(analyze(tiny_resnet(width=8)), prune_rate=0.2, round_to=8)
    sizes = [g.size for g in space.groups]
    assert sizes == [12, 16]
    assert space.child(space.original, [PRUNE, PRUNE]) == (8, 8)  # 12 -> 9 -> 8; 16 -> 12 -> 16 is no cut -> 8
    assert space.child((8, 8), [PRUNE, PRUNE]) == (8, 8)  # round_to is the floor
    rows = space.descriptors((8, 16))
    np.testing.assert_array_equal(rows[:, DESCRIPTOR_FEATURES.index("can_prune")], [0, 1])



def test_with_round_to_a_small_prune_rate_steps_to_the_next_allowed_count_down():
    space = StructureSpace(analyze(tiny_resnet(width=15)), prune_rate=0.05, round_to=8)
    assert [g.size for g in space.groups] == [19, 30]  # allowed: 8, 16, 19 and 8, 16, 24, 30
    assert space.child(space.original, [PRUNE, PRUNE]) == (16, 24)  # 19 -> 18 rounds to 19: no cut, so 16
    assert space.smallest == (8, 8)
    with pytest.raises(PruneError, match="round_to must be a whole number"):
        StructureSpace(space.graph, prune_rate=0.2, round_to=0)


def test_a_model_with_fewer_than_two_prunable_groups_is_refused():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="only")(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(x))
    with pytest.raises(PruneError, match="at least two prunable"):
        StructureSpace(analyze(keras.Model(inputs, outputs)), prune_rate=0.2)


def test_the_fewer_than_two_groups_error_suggests_prune_residual_only_when_it_would_help():
    inputs = keras.Input((8, 8, 1))
    stem = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    added = keras.layers.Add()([stem, keras.layers.Conv2D(4, 3, padding="same")(stem)])
    graph = analyze(keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(added))))
    with pytest.raises(PruneError, match="1 more are tied by residual additions: pass --prune_residual"):
        StructureSpace(graph, prune_rate=0.2)
    # A residual addition of a concatenation: its group is made in parts, which lstm never searches,
    # so --prune_residual would not help (nor does it when already given).
    inputs = keras.Input((8, 8, 1))
    stem = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    parts = [keras.layers.Conv2D(2, 1)(stem), keras.layers.Conv2D(2, 1)(stem)]
    added = keras.layers.Add()([keras.layers.Concatenate()(parts), keras.layers.Conv2D(4, 1)(stem)])
    graph = analyze(keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(added))))
    for prune_residual in (False, True):
        with pytest.raises(PruneError, match="at least two prunable") as refused:
            StructureSpace(graph, prune_rate=0.2, prune_residual=prune_residual)
        assert "--prune_residual" not in str(refused.value)


@pytest.mark.parametrize("rate", [0.0, 1.0, 1.5, -0.1])
def test_prune_rate_outside_the_unit_interval_is_refused(rate):
    with pytest.raises(PruneError, match="prune_rate"):
        LSTMSettings(prune_rate=rate)
    fv = flags.FlagValues()
    define_flags(fv)
    with pytest.raises(flags.IllegalFlagValueError, match="prune_rate must be in"):
        fv(["prune", "--method=lstm", "--model=lenet5", "--output_dir=/tmp/x", f"--prune_rate={rate}"])


def _one_group_model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="one_group")


@pytest.mark.parametrize("problem", ["one_group", "prune_rate"])
def test_a_model_or_setting_lstm_cannot_search_fails_before_pre_training(tmp_path, monkeypatch, problem):
    import keras_prune.methods.lstm.method as lstm_method
    import keras_prune.pipeline as pipeline

    def must_not_run(*args, **kwargs):
        raise AssertionError("training or the search started before the lstm settings were checked")

    monkeypatch.setattr(pipeline, "train_classifier", must_not_run)
    monkeypatch.setattr(lstm_method, "run", must_not_run)
    if problem == "one_group":  # a model file (not pre-trained by the pipeline)
        model, dataset, prune_rate, match = str(tmp_path / "model.keras"), "digits", 0.2, "at least two prunable"
        _one_group_model().save(model)
    else:  # a zoo model, pre-trained by the pipeline unless the check comes first
        model, dataset, prune_rate, match = "lenet5", "mnist5k", 1.5, "prune_rate"
    config = RunConfig(method="lstm", model=model, output_dir=str(tmp_path / "run"), dataset=dataset,
                       pretrain_epochs=3, verbose=0, prune_rate=prune_rate)
    with pytest.raises(PruneError, match=match):
        run(config)


def test_gated_reward_pays_for_flops_until_accuracy_falls_beyond_the_tolerance():
    assert reward(0.95, 0.4, reference_accuracy=0.955) == pytest.approx(0.6)
    assert reward(0.93, 0.4, reference_accuracy=0.955, penalty=10.0) == pytest.approx(0.6 - 10 * 0.015)
    assert reward(0.9, 0.5, reference_accuracy=0.9, form="linear", beta=0.5) == pytest.approx(0.75)
    with pytest.raises(PruneError, match="lstm_reward"):
        LSTMSettings(reward_form="nope")


def test_target_reward_pays_for_flops_down_to_the_target_then_for_accuracy():
    at = dict(reference_accuracy=0.9, form="target", target_flops=0.5)
    assert reward(0.9, 0.7, **at) == pytest.approx(0.3)
    assert reward(0.9, 0.5, **at) == pytest.approx(0.5)
    assert reward(0.9, 0.3, **at) == pytest.approx(0.5)  # nothing for FLOPs below the target
    assert reward(0.918, 0.4, **at) > reward(0.909, 0.3, **at)  # at the target, the more accurate wins
    assert reward(0.918, 0.4, **at, beta=2.0) == pytest.approx(0.5 + 2.0 * 0.02)
    assert reward(0.8, 0.5, **at, penalty=10.0) == pytest.approx(0.5 - 0.1 / 0.9 - 10 * 0.09)
    with pytest.raises(PruneError, match="target_flops"):
        reward(0.9, 0.5, reference_accuracy=0.9, form="target")


def _search(model, data, tmp_path, strategy=None, **overrides):
    settings = dict(recovery_epochs=1, max_epochs=2, parents=2, children=2, hidden_units=8,
                    learning_rate=0.01, target_flops=0.05, seed=0)
    settings = LSTMSettings(**{**settings, **overrides})
    space = StructureSpace(analyze(model), prune_rate=settings.prune_rate)
    return LSTMSearch(model, space, data, strategy or tf.distribute.get_strategy(), settings,
                      workdir=str(tmp_path / "lstm"), log=lambda message: None)


@pytest.fixture
def counted_distill(monkeypatch):
    """Counts recoveries (each is one trained child); `fail_after` makes the next one crash."""
    import keras_prune.methods.lstm.search as search_module

    calls = {"n": 0, "fail_after": None}

    def wrapper(*args, **kwargs):
        if calls["fail_after"] is not None and calls["n"] >= calls["fail_after"]:
            raise KeyboardInterrupt("killed")
        calls["n"] += 1
        return distill(*args, **kwargs)

    monkeypatch.setattr(search_module, "distill", wrapper)
    return calls


def test_a_child_whose_recovery_diverges_scores_zero_and_the_search_goes_on(digits, tmp_path, monkeypatch):
    import keras_prune.methods.lstm.search as search_module
    from keras_prune.errors import TrainingDivergedError

    calls = []

    def diverging_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TrainingDivergedError("Teacher-student recovery diverged (loss NaN/inf)")
        return distill(*args, **kwargs)

    monkeypatch.setattr(search_module, "distill", diverging_first)
    keras.utils.set_random_seed(0)
    search = _search(tiny_resnet(width=8), digits, tmp_path, children=3, recovery_epochs=1)
    best = search.run()
    (diverged,) = [r for r in search.candidates.values() if r.get("diverged")]
    assert diverged["accuracy"] == 0.0 and diverged["model_file"] is None
    assert search.epoch == 2, "the search went on"
    assert diverged["key"] not in search.parents() and not best.get("diverged")
    assert search.ranked()[-1] is diverged


def test_search_trains_each_structure_once_and_reports_every_one(digits, tmp_path, counted_distill):
    keras.utils.set_random_seed(0)
    search = _search(tiny_resnet(width=8), digits, tmp_path, children=3, recovery_epochs=0)
    best = search.run()
    evaluated = len(search.candidates) - 1
    assert counted_distill["n"] == evaluated
    assert evaluated + search.cache_hits == search.samples
    assert search.epoch == 2 and search.stopped.startswith("reached --lstm_epochs")
    assert best["reward"] == max(r["reward"] for r in search.candidates.values())
    keys = [r["key"] for r in search.candidates.values()]
    assert len(keys) == len(set(keys))
    for record in search.candidates.values():
        if record["model_file"] and not record.get("discarded"):  # the others' files are deleted
            model = keras.models.load_model(os.path.join(search.workdir, record["model_file"]), compile=False)
            assert count_flops(model).total / search.space.full_flops == pytest.approx(record["flops_ratio"])
    assert [h["epoch"] for h in search.history] == [1, 2]
    details = describe(search)
    assert details["structures_evaluated"] == evaluated and len(details["structures"]) == evaluated + 1
    for row, count, original in zip(details["sensitivity"], best["counts"], search.space.original):
        assert row["best"] == count and row["pruned_in_best"] == pytest.approx(1 - count / original, abs=1e-4)
    assert sum(r["prune_decisions"] for r in details["sensitivity"]) == int(search.decisions.sum())


@pytest.fixture
def recorded_steps(monkeypatch):
    """Every controller step of `recorded_steps["search"]`: its parent and the children's actions and advantages."""
    import keras_prune.methods.lstm.search as search_module

    steps = {"search": None, "calls": []}
    original = search_module.reinforce_step

    def wrapper(controller, optimizer, descriptors, actions, advantages):
        pending = steps["search"].pending
        steps["calls"].append({"parent": pending["parents"][pending["next"]], "actions": np.asarray(actions).copy(),
                               "advantages": np.asarray(advantages, float).copy()})
        return original(controller, optimizer, descriptors, actions, advantages)

    monkeypatch.setattr(search_module, "reinforce_step", wrapper)
    return steps


def test_each_parents_reward_is_the_baseline_of_its_childrens(digits, tmp_path, recorded_steps):
    keras.utils.set_random_seed(0)
    search = _search(tiny_resnet(width=8), digits, tmp_path, children=3, recovery_epochs=0, max_epochs=2)
    recorded_steps["search"] = search
    search.run()
    assert len(recorded_steps["calls"]) >= 2
    for call in recorded_steps["calls"]:
        parent = search.candidates[call["parent"]]
        rewards = [search.candidates[structure_key(search.space.child(parent["counts"], a))]["reward"]
                   for a in call["actions"]]
        np.testing.assert_allclose(call["advantages"], np.asarray(rewards) - parent["reward"], atol=1e-9)


def test_the_first_epoch_feeds_the_pretrained_network_then_the_best_structures_in_turn(
        digits, tmp_path, recorded_steps):
    keras.utils.set_random_seed(0)
    search = _search(tiny_resnet(width=8), digits, tmp_path, children=3, recovery_epochs=0, max_epochs=2,
                     parents=2, target_flops=0.01)
    recorded_steps["search"] = search
    chosen = []  # (parents, every structure's reward) at the start of each controller epoch
    ranked_parents = search.parents

    def parents():
        keys = ranked_parents()
        chosen.append((keys, {k: r["reward"] for k, r in search.candidates.items()}))
        return keys

    search.parents = parents
    search.run()
    root = structure_key(search.space.original)
    assert [keys for keys, _ in chosen][0] == [root]
    keys, pool = chosen[1]
    assert len(keys) == 2 < len(pool)
    assert min(pool[k] for k in keys) >= max(r for k, r in pool.items() if k not in keys)
    assert [c["parent"] for c in recorded_steps["calls"]] == [root, *keys], "each parent in turn, one step each"


@pytest.mark.parametrize("teacher", ["parent", "original"])
def test_children_are_distilled_from_the_teacher_the_settings_name(digits, tmp_path, monkeypatch, teacher):
    import keras_prune.methods.lstm.search as search_module

    teachers = []
    monkeypatch.setattr(search_module, "distill", lambda child, teacher_model, *a, **k: teachers.append(teacher_model))
    keras.utils.set_random_seed(0)
    search = _search(tiny_resnet(width=8), digits, tmp_path, children=2, max_epochs=2, parents=2,
                     target_flops=0.01, teacher=teacher)
    search.run()
    children_of_children = [r for r in search.candidates.values()
                            if r["parent"] and search.candidates[r["parent"]]["model_file"]]
    assert children_of_children, "the second epoch must prune a child, so the two teachers differ"
    if teacher == "original":
        assert all(t is search.model for t in teachers)
    else:
        assert any(t is not search.model for t in teachers)
        assert teachers[0] is search.model  # the first child's parent is the pre-trained network


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_a_prune_decision_removes_the_channels_with_the_smallest_filter_norm(digits, tmp_path, criterion):
    model = tiny_resnet(width=8)
    kernel = np.zeros(model.get_layer("block_1").kernel.shape, "float32")  # 3x3x8 -> 12 channels
    kernel[..., :3] = 0.1  # three spread filters: L1 norm 7.2, L2 norm 0.85
    for channel in range(3, 12):
        kernel[0, 0, 0, channel] = channel - 2  # nine one-weight filters: both norms 1 .. 9
    model.get_layer("block_1").kernel.assign(kernel)
    search = _search(model, digits, tmp_path, recovery_epochs=0, criterion=criterion)
    search.reference_accuracy = 0.5
    root = search._add(search.space.original, parent=None, accuracy=0.5, model_file=None, seconds=0.0)
    child = search.evaluate(root, (9, 16))
    saved = keras.models.load_model(os.path.join(search.workdir, child["model_file"]), compile=False)
    kept = {"l1": [0, 1, 2, 6, 7, 8, 9, 10, 11], "l2": list(range(3, 12))}[criterion]
    np.testing.assert_array_equal(saved.get_layer("block_1").kernel.numpy(), kernel[..., kept])


def test_a_registered_criterion_decides_which_channels_a_prune_decision_removes(digits, tmp_path, monkeypatch):
    from keras_prune.criteria import register_criterion, registry

    monkeypatch.setattr(registry, "_CRITERIA", dict(registry._CRITERIA))
    register_criterion("keep_last", lambda graph, group: np.arange(group.size, dtype=float))
    model = tiny_resnet(width=8)
    search = _search(model, digits, tmp_path, recovery_epochs=0, criterion="keep_last")
    search.reference_accuracy = 0.5
    root = search._add(search.space.original, parent=None, accuracy=0.5, model_file=None, seconds=0.0)
    saved = keras.models.load_model(os.path.join(search.workdir, search.evaluate(root, (9, 16))["model_file"]),
                                    compile=False)
    np.testing.assert_array_equal(saved.get_layer("block_1").kernel.numpy(),
                                  model.get_layer("block_1").kernel.numpy()[..., 3:])


def test_sensitivity_reads_the_best_pruned_structures_not_the_pretrained_network(digits, tmp_path):
    search = _search(tiny_resnet(width=8), digits, tmp_path, parents=2)
    search.candidates, search.reference_accuracy = {}, 0.9
    search.decisions, search.samples = np.asarray([3, 1]), 4
    root = search._add(search.space.original, parent=None, accuracy=0.9, model_file=None, seconds=0.0)
    assert root["reward"] == 0.0
    for counts, accuracy in [((9, 16), 0.7), ((12, 12), 0.7), ((9, 12), 0.5)]:  # all rewarded below the root
        search._add(counts, parent=root["key"], accuracy=accuracy, model_file="x.keras", seconds=0.0)
    rows = {row["group"]: row for row in sensitivity(search)}
    top = [r["counts"] for r in search.ranked() if r["model_file"]][:2]
    assert len(top) == 2 and search.ranked()[0] is root, "the unpruned network ranks first, and is left out"
    for i, group in enumerate(("block_1", "plain")):
        original = search.space.original[i]
        assert rows[group]["mean_pruned_in_top"] == pytest.approx(np.mean([1 - c[i] / original for c in top]), abs=1e-4)
        assert rows[group]["share_pruned_in_top"] == pytest.approx(np.mean([c[i] < original for c in top]))
    assert rows["block_1"]["prune_frequency"] == 0.75


def test_search_stops_once_the_best_structure_meets_the_flops_target(digits, tmp_path):
    search = _search(tiny_resnet(width=8), digits, tmp_path, target_flops=0.999, max_epochs=5,
                     recovery_epochs=0, tolerance=1.0)
    search.run()
    assert search.best()["flops_ratio"] <= 0.999 and "target_flops" in search.stopped
    assert search.epoch < 5


def test_target_reward_searches_past_the_target_and_returns_the_best_structure_at_it(digits, tmp_path):
    search = _search(tiny_resnet(width=8), digits, tmp_path, target_flops=0.999, max_epochs=3,
                     recovery_epochs=0, tolerance=1.0, reward_form="target")
    best = search.run()
    assert search.epoch == 3 and search.stopped.startswith("reached --lstm_epochs")
    at_target = [r for r in search.candidates.values() if r["flops_ratio"] <= 0.999]
    assert best["flops_ratio"] <= 0.999 and best["reward"] == max(r["reward"] for r in at_target)


def _record(id_, flops_ratio, reward_, accuracy=0.9):
    return {"id": id_, "key": f"s{id_}", "flops_ratio": flops_ratio, "reward": reward_, "accuracy": accuracy}


def _epoch(search, *records):
    """Adds `records` to the pool and closes a controller epoch on them."""
    search.candidates.update({r["key"]: r for r in records})
    search.pending = {"parents": [], "rewards": [r["reward"] for r in records], "entropy": [0.5]}
    search._end_epoch()
    return search.history[-1]["epochs_without_improvement"]


def test_real_settings_are_stored_as_floats():
    settings = LSTMSettings(learning_rate=1, controller_learning_rate=np.float32(0.5), temperature=4)
    assert [type(v) for v in (settings.learning_rate, settings.controller_learning_rate, settings.temperature)] == [
        float, float, float], "Keras' optimizers refuse an int learning rate"


def test_a_first_epoch_that_does_not_beat_the_pretrained_network_counts_toward_patience(digits, tmp_path):
    search = _search(tiny_resnet(width=8), digits, tmp_path, target_flops=0.5, patience=1)
    search.candidates, search.reference_accuracy = {}, 0.9
    search.candidates["root"] = {**_record(0, 1.0, 0.0), "key": "root", "epoch": 0}
    assert _epoch(search, _record(1, 0.6, -0.5, accuracy=0.7)) == 1 and "patience" in search.stopped


@pytest.mark.parametrize("form", ["gated", "target"])
def test_which_structure_is_best_and_when_the_search_stops_depend_on_the_reward(digits, tmp_path, form):
    search = _search(tiny_resnet(width=8), digits, tmp_path, target_flops=0.5, patience=3, reward_form=form)
    search.candidates, search.reference_accuracy = {}, 0.9
    assert _epoch(search, _record(0, 1.0, 0.0), _record(1, 0.6, 0.4)) == 0
    # A child past the target that lost far more accuracy than the tolerance (0.01) wins under no reward:
    assert _epoch(search, _record(9, 0.3, -0.5, accuracy=0.8)) == 1 and search.best()["id"] == 1
    # A child at the target, within the tolerance, with a lower reward:
    stale = _epoch(search, _record(2, 0.45, 0.3, accuracy=0.895))
    if form == "gated":
        # gated ranks by reward alone: the better-rewarded child above the target stays the best,
        # and the search goes on (it stops once the best by reward meets the target).
        assert search.best()["id"] == 1 and stale == 2 and search.stopped is None
        assert _epoch(search, _record(3, 0.5, 0.5)) == 0 and "target_flops" in search.stopped
        assert search.best()["id"] == 3
    else:
        # target: meeting the budget (at the target, within the tolerance) beats any reward above it,
        # and reaching it is no reason to stop.
        assert search.best()["id"] == 2 and stale == 0 and search.stopped is None
        assert _epoch(search, _record(3, 0.4, 0.3, accuracy=0.895)) == 1  # an equal reward at fewer FLOPs: no
        assert search.best()["id"] == 3 and search.stopped is None
        assert _epoch(search, _record(3, 0.4, 0.3, accuracy=0.895)) == 2 and search.stopped is None  # a cache hit
        assert _epoch(search, _record(3, 0.4, 0.3, accuracy=0.895)) == 3 and "patience" in search.stopped
    assert search.parents()[0] == ("s3" if form == "gated" else "s1")  # the controller's parents rank by reward


def test_a_resumed_search_recomputes_rewards_with_its_settings(digits, tmp_path):
    model = tiny_resnet(width=8)
    first = _search(model, digits, tmp_path, max_epochs=2, recovery_epochs=0, patience=5)
    first.run()
    assert len(first.history) == 2, "two epochs: the second's count of epochs without improvement is recomputed"
    resumed = _search(model, digits, tmp_path, max_epochs=2, recovery_epochs=0, reward_form="linear", beta=0.3)
    resumed.restore(os.path.join(resumed.workdir, "checkpoint.npz"))
    assert len(resumed.candidates) == len(first.candidates) > 1
    for record in resumed.candidates.values():
        expected = resumed.settings.reward(record["accuracy"], record["flops_ratio"], resumed.reference_accuracy)
        assert record["reward"] == pytest.approx(expected)
        assert record["reward"] != pytest.approx(first.candidates[record["key"]]["reward"])
    # The history's best is compared with the next epoch's best: it must be on the same scale.
    for entry, before in zip(resumed.history, first.history, strict=True):
        reference = resumed.reference_accuracy
        expected = resumed.settings.reward(entry["best_accuracy"], entry["best_flops_ratio"], reference)
        assert entry["best_reward"] == pytest.approx(expected)
        assert entry["best_reward"] != pytest.approx(before["best_reward"])
        pool = [r["reward"] for r in resumed.candidates.values() if r["epoch"] <= entry["epoch"]]
        assert entry["best_reward"] == max(pool)
    same = _search(model, digits, tmp_path, max_epochs=2, recovery_epochs=0, patience=5)
    same.restore(os.path.join(same.workdir, "checkpoint.npz"))
    assert same.history == first.history, "resumed with the same settings, the history is the one written"


def test_only_the_models_a_later_epoch_can_need_stay_on_disk(digits, tmp_path):
    keras.utils.set_random_seed(0)
    search = _search(tiny_resnet(width=8), digits, tmp_path, recovery_epochs=0, max_epochs=3, children=3,
                     patience=5)
    best = search.run()
    children = [r for r in search.candidates.values() if r["model_file"] is not None]
    on_disk = {r["key"] for r in children if os.path.exists(os.path.join(search.workdir, r["model_file"]))}
    assert len(children) > search.settings.parents + 1, "more children than a pool: some were discarded"
    needed = {best["key"], *search.parents()}  # the pre-trained root among them has no file of its own
    assert on_disk == {k for k in needed if search.candidates[k]["model_file"] is not None}
    assert {r["key"] for r in children if r.get("discarded")} == {r["key"] for r in children} - on_disk
    assert search.load(best) is not None
    restored = _search(tiny_resnet(width=8), digits, tmp_path, recovery_epochs=0, max_epochs=3, children=3, patience=5)
    restored.restore(os.path.join(restored.workdir, CHECKPOINT))
    assert restored.best()["key"] == best["key"] and restored.parents() == search.parents()


def test_resume_after_a_kill_keeps_controller_pool_and_every_evaluated_child(digits, tmp_path, counted_distill):
    keras.utils.set_random_seed(0)
    model = tiny_resnet(width=8)
    reference = _search(model, digits, tmp_path / "reference", recovery_epochs=0, max_epochs=2, children=3)
    reference.run()
    trained = counted_distill["n"]

    counted_distill.update(n=0, fail_after=max(1, trained - 1))
    killed = _search(model, digits, tmp_path, recovery_epochs=0, max_epochs=2, children=3)
    with pytest.raises(KeyboardInterrupt):
        killed.run()
    done_before_kill = counted_distill["n"]
    saved = {r["key"] for r in killed.candidates.values()}
    weights = [w.copy() for w in killed.controller.get_weights()]

    counted_distill.update(n=0, fail_after=None)
    resumed = _search(model, digits, tmp_path, recovery_epochs=0, max_epochs=2, children=3)
    resumed.restore(os.path.join(resumed.workdir, CHECKPOINT))
    assert {r["key"] for r in resumed.candidates.values()} == saved
    for restored, expected in zip(resumed.controller.get_weights(), weights):
        np.testing.assert_array_equal(restored, expected)
    resumed = _search(model, digits, tmp_path, recovery_epochs=0, max_epochs=2, children=3)
    resumed.run(resume=True)
    # Only the children not evaluated before the kill are trained, and the search ends
    # exactly where the uninterrupted one did (same decisions, same structures).
    assert done_before_kill + counted_distill["n"] == trained
    assert set(resumed.candidates) == set(reference.candidates)
    assert resumed.samples == reference.samples
    assert resumed.cache_hits == reference.cache_hits, "children replayed after the resume are not cache hits"


def test_distillation_step_under_mirrored_strategy_trains_only_the_student(mirrored, digits):
    with mirrored.scope():
        teacher = tiny_resnet(width=4)
        student = tiny_resnet(width=4)
    teacher_before = [w.copy() for w in teacher.get_weights()]
    student_before = [w.copy() for w in student.get_weights()]
    history = distill(student, teacher, digits.train.take(2), mirrored, epochs=1, learning_rate=0.05)
    assert np.isfinite(history.history["loss"][-1]) and history.history["distillation"][-1] >= 0
    assert any(not np.allclose(a, b) for a, b in zip(student.get_weights(), student_before))
    assert all(np.array_equal(a, b) for a, b in zip(teacher.get_weights(), teacher_before))
    assert teacher.trainable  # the teacher's flag is left alone (children copy layer configs)
    bare = keras.optimizers.SGD(0.05, momentum=0.9)
    bare.build([])
    slots = len(history.model.optimizer.variables) - len(bare.variables)
    assert slots == len(student.trainable_variables), "momentum for the student only, not for the teacher"


def test_a_child_is_pruned_recovered_and_scored_under_mirrored_strategy(mirrored, digits, tmp_path):
    with mirrored.scope():
        model = tiny_resnet(width=8)
    search = _search(model, digits, tmp_path, strategy=mirrored, max_epochs=1, children=1, recovery_epochs=1)
    search.reference_accuracy = 0.5
    root = search._add(search.space.original, parent=None, accuracy=0.5, model_file=None, seconds=0.0)
    child = search.evaluate(root, (9, 16))
    assert child["counts"] == [9, 16] and 0.0 <= child["accuracy"] <= 1.0
    saved = keras.models.load_model(os.path.join(search.workdir, child["model_file"]), compile=False)
    assert saved.get_layer("block_1").filters == 9


def test_distillation_scales_its_loss_as_the_optimizer_asks():
    # An optimizer with a loss scale (as Keras wraps one under mixed precision) divides the
    # gradients by it: a step that does not scale its loss would barely move the student.
    x = np.random.default_rng(0).random((8, 8, 8, 1)).astype("float32")
    y = np.arange(8) % 10
    keras.utils.set_random_seed(0)
    teacher = tiny_resnet(width=4)
    moved = []
    for factor in (None, 1024.0):
        keras.utils.set_random_seed(1)
        student = tiny_resnet(width=4)
        before = [np.array(w) for w in student.get_weights()]
        distiller = Distiller(student, teacher, temperature=3.0, alpha=0.5)
        distiller.compile(optimizer=keras.optimizers.SGD(0.05, loss_scale_factor=factor))
        distiller.train_on_batch(x, y)
        moved.append(np.concatenate([(w - b).ravel() for w, b in zip(student.get_weights(), before)]))
    assert np.abs(moved[0]).sum() > 0
    np.testing.assert_allclose(moved[1], moved[0], rtol=1e-3, atol=1e-6)


def test_distillation_loss_is_zero_divergence_for_a_student_equal_to_its_teacher():
    teacher = tiny_resnet(width=4)
    x = np.random.default_rng(0).random((8, 8, 8, 1)).astype("float32")
    y = np.arange(8) % 10
    distiller = Distiller(teacher, teacher, temperature=3.0, alpha=1.0)
    total, divergence, _, _ = distiller.losses_of(x, y, training=False)
    assert float(divergence) == pytest.approx(0.0, abs=1e-5) and float(total) == pytest.approx(0.0, abs=1e-5)


def test_final_training_data_is_train_plus_validation(digits):
    merged = train_and_validation(digits, 64)
    total = digits.info.num_train + digits.info.num_validation
    assert merged.info.num_train == total and merged.info.num_validation == 0
    assert sum(int(x.shape[0]) for x, _ in merged.train) == total


def test_validation_examples_are_spread_over_the_final_training_epoch(digits):
    # More examples than a bounded shuffle buffer holds: train images are 0, validation 1.
    def split(value, n):
        return tf.data.Dataset.from_tensor_slices((np.full((n, 1), value, "float32"), np.zeros(n, "int32"))).batch(500)

    info = dataclasses.replace(digits.info, num_train=40_000, num_validation=2_000)
    # A Dataset put together by hand, with no merged pipeline of its loader's: the interleave.
    data = dataclasses.replace(
        digits, train=split(0.0, 40_000), validation=split(1.0, 2_000), info=info, train_and_validation=None
    )
    flags = np.concatenate([x.numpy()[:, 0] for x, _ in train_and_validation(data, 500).train])
    assert flags.size == 42_000 and flags.sum() == 2_000
    assert flags[:21_000].sum() > 500, "validation examples must not all come at the end of the epoch"


def test_lstm_run_end_to_end_writes_sensitivity_and_every_structure(tmp_path):
    keras.utils.set_random_seed(0)
    path = tmp_path / "tiny.keras"
    tiny_resnet(width=8).save(path)
    out = tmp_path / "run"
    config = RunConfig(
        method="lstm", model=str(path), output_dir=str(out), dataset="digits", pretrain_epochs=0,
        finetune_epochs=1, batch_size=64, latency_repeats=2, export=("keras",), verbose=0,
        recovery_epochs=1, lstm_epochs=1, lstm_children=2, lstm_parents=2, target_flops=0.1,
    )
    report = run(config)
    details = report["method_details"]
    assert [row["group"] for row in details["sensitivity"]] == ["block_1", "plain"]
    assert len(details["structures"]) == details["structures_evaluated"] + 1
    assert details["epochs"][-1]["children_evaluated"] == details["structures_evaluated"], "one count, not two"
    best = details["best_structure"]
    assert report["flops_ratio"] == pytest.approx(best["flops_ratio"])
    assert (out / "plots" / "lstm_sensitivity.png").exists() and (out / "plots" / "lstm_reward.png").exists()
    assert json.loads((out / "report.json").read_text())["method"] == "lstm"
    assert "sensitivity" in (out / "report.md").read_text()
    tags = {value.tag for events in (out / "tensorboard").glob("events*")
            for event in tf.compat.v1.train.summary_iterator(str(events)) for value in event.summary.value}
    assert {"lstm/mean_reward", "lstm/policy_entropy", "lstm/best_flops_ratio", "lstm/best_accuracy",
            "lstm/child_reward"} <= tags


def test_children_replayed_after_a_resume_are_not_cache_hits(digits, tmp_path, counted_distill):
    keras.utils.set_random_seed(0)
    model = tiny_resnet(width=8)
    reference = _search(model, digits, tmp_path / "reference", recovery_epochs=0, max_epochs=2, children=4)
    reference.run()
    assert counted_distill["n"] >= 3
    counted_distill.update(n=0, fail_after=2)  # killed while training the third child
    killed = _search(model, digits, tmp_path, recovery_epochs=0, max_epochs=2, children=4)
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        killed.run()
    killed_seconds = time.perf_counter() - start
    assert killed.pending["actions"] is not None, "killed inside a batch, some of whose children are trained"
    counted_distill.update(n=0, fail_after=None)
    resumed = _search(model, digits, tmp_path, recovery_epochs=0, max_epochs=2, children=4)
    resumed.run(resume=True)
    assert resumed.samples == reference.samples
    assert resumed.cache_hits == reference.cache_hits
    # The killed process's time counts (up to its last checkpoint, after the second child), though it
    # died inside the first controller epoch.
    assert 0.3 * killed_seconds < resumed.seconds_before <= killed_seconds
    assert resumed.seconds > resumed.seconds_before


def test_a_search_that_stopped_above_a_reachable_target_is_warned_about():
    stopped = missed_target_warning(0.758, 0.2, 0.5, 0.6)
    assert stopped.startswith("lstm: warning: the best structure keeps 0.7580") and "stopped before" in stopped
    assert "rewarded less" in missed_target_warning(0.758, 0.2, 0.5, 0.45)
    assert missed_target_warning(0.504, 0.2, 0.5, 0.504) is None  # within 1%
    assert missed_target_warning(0.3, 0.2, 0.5, 0.3) is None  # below: the target is where the search stops
    assert missed_target_warning(0.758, 0.6, 0.5, 0.7) is None  # out of reach: warned before the search
