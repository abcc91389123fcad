"""Runtime Neural Pruning: group split, masked vs sliced stages, the decision network,
Q-learning pieces, the SavedModel, errors, resume, a mirrored step and a run end to end."""

import dataclasses
import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from keras_prune.agents.dqn import DecisionNet, ReplayBuffer, epsilon_at, step_rewards, td_targets
from keras_prune.cli.flags import define_flags
from keras_prune.errors import PruneError, TrainingDivergedError
from keras_prune.methods.rnp import CHECKPOINT, build
from keras_prune.methods.rnp.backbone import RuntimeBackbone, check_head, reorder_channels, split_chain
from keras_prune.methods.rnp.report import _label_clusters
from keras_prune.methods.rnp.serving import RNPServing, export_saved_model
from keras_prune.methods.rnp.settings import RNPSettings
from keras_prune.pipeline import RunConfig, run

from conftest import tiny_resnet

SETTINGS = RNPSettings(alpha=1.0, embed=8, hidden=16, replay=64, rounds=2, decision_steps=2, backbone_steps=2,
                       q_learning_rate=1e-2)


def chain(channels=(6, 10, 8), input_shape=(8, 8, 1), classes=5, seed=0):
    """conv-BN-ReLU(-pool) blocks -> GAP -> Dense, with non-trivial BN statistics."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = inputs
    for i, c in enumerate(channels):
        x = keras.layers.Conv2D(c, 3, padding="same", use_bias=i % 2 == 1, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if i == 1:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(classes, name="out")(x))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.2, c),
                               rng.uniform(0.5, 2.0, c)])
    return model


def images(n=4, shape=(8, 8, 1)):
    return np.random.default_rng(1).normal(size=(n, *shape)).astype("float32")


def test_groups_split_evenly_or_give_the_remainder_to_the_first_groups():
    backbone = RuntimeBackbone(chain((6, 8, 10)), 4)
    assert backbone.boundaries == [[2, 4, 6, 8], [3, 6, 8, 10]], "8 -> 2,2,2,2; 10 -> 3,3,2,2"
    assert backbone.state_sizes == [6, 8], "the first conv is not pruned: its output is the first state"
    with pytest.raises(PruneError, match="more than the 3 channels"):
        RuntimeBackbone(chain((6, 3, 10)), 4)


@pytest.mark.parametrize("head", ["gap", "flatten"])
def test_norm_order_puts_the_strongest_filters_first_and_keeps_the_function(head):
    model = chain()
    if head == "flatten":
        features = model.get_layer("relu2").output
        x = keras.layers.Flatten(name="flat")(features)
        model = keras.Model(model.input, keras.layers.Dense(5, name="out2")(x))
    x = images()
    before = model(x).numpy()
    backbone = RuntimeBackbone(model, 4)
    reorder_channels(backbone, "norm")
    np.testing.assert_allclose(model(x), before, atol=1e-5)
    raw_descending = []
    for t, stage in enumerate(backbone.stages):
        norms = np.sqrt((backbone.folded_stage(t)[0] ** 2).sum(axis=(0, 1, 2)))
        assert np.all(np.diff(norms) <= 1e-6), "descending norm of the filters as inference computes them"
        raw = np.sqrt((stage[0].kernel.numpy() ** 2).sum(axis=(0, 1, 2)))
        raw_descending.append(bool(np.all(np.diff(raw) <= 1e-7)))
    assert not all(raw_descending), "BatchNorm rescales each channel: the raw filter norm orders them otherwise"


def test_masked_stage_equals_the_dense_layers_with_every_group_and_the_sliced_ones_otherwise():
    model = chain()
    backbone = RuntimeBackbone(model, 4)
    x = backbone.run_stem(images())
    dense = x
    for layer in backbone.stages[0]:
        dense = layer(dense, training=False)
    full = backbone.run_stage(0, x, np.full(4, 4), training=False)
    np.testing.assert_allclose(full, dense, atol=1e-6)
    for action, channels in enumerate(backbone.boundaries[0], start=1):
        masked = backbone.run_stage(0, x, np.full(4, action), training=False).numpy()
        sliced = backbone.run_stage_sliced(0, tf.constant(x), channels, backbone.folded_stage(0)).numpy()
        assert sliced.shape[-1] == channels
        np.testing.assert_allclose(masked[..., :channels], sliced, atol=1e-5)
        assert not masked[..., channels:].any(), "skipped channels are exact zeros"


def test_decision_net_shapes_and_keras_round_trip(tmp_path):
    net = DecisionNet([6, 8, 5], 4, embed=8, hidden=16)
    net.build()
    states = [np.random.default_rng(t).normal(size=(3, s)).astype("float32") for t, s in enumerate([6, 8, 5])]
    q = net(states).numpy()
    assert q.shape == (3, 3, 4)
    config = net.get_config()
    for argument in ("state_sizes", "actions", "embed", "hidden"):
        assert argument in config
    path = tmp_path / "decision.keras"
    net.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(states), q, atol=1e-6)
    assert net.macs_per_sample() == sum(s * 8 + 3 * (8 * 16 + 16 * 16) + 16 * 4 for s in (6, 8, 5))


def test_epsilon_falls_linearly_then_stays_at_its_floor():
    assert epsilon_at(0, 100) == 1.0
    assert epsilon_at(50, 100) == pytest.approx(0.55)
    assert epsilon_at(100, 100) == pytest.approx(0.1)
    assert epsilon_at(10_000, 100) == pytest.approx(0.1)


def test_rewards_and_td_targets():
    actions = np.array([[0, 3, 1]])
    rewards = step_rewards(actions, np.array([2.0]), penalty=0.1, alpha=0.5)
    np.testing.assert_allclose(rewards, [[0.0, -0.3, -0.1 - 1.0]])
    next_q = np.array([[[9.0, 9.0], [1.0, 2.0], [3.0, -1.0]]], "float32")
    targets = td_targets(rewards, next_q, gamma=0.5).numpy()
    np.testing.assert_allclose(targets, [[0.0 + 0.5 * 2.0, -0.3 + 0.5 * 3.0, -1.1]], atol=1e-6)


def test_td_targets_of_a_single_decision_step_are_the_rewards():
    # A backbone with two convs has one decision: nothing to bootstrap from, and no NaN.
    rewards = np.array([[-1.5], [-0.2]], "float32")
    targets = td_targets(rewards, np.zeros((2, 1, 4), "float32"), gamma=0.9).numpy()
    np.testing.assert_allclose(targets, rewards)


def test_q_learning_never_updates_the_backbone():
    trainer = build(chain(), tf.distribute.get_strategy(), SETTINGS)
    before = [w.numpy().copy() for w in trainer.backbone.model.weights]
    decision_before = [w.numpy().copy() for w in trainer.decision.trainable_weights]
    x, y = tf.constant(images(8)), tf.constant(np.arange(8) % 5)
    for _ in range(2):
        trainer.decision_step(x, y)
    for old, new in zip(before, trainer.backbone.model.weights):
        np.testing.assert_array_equal(old, new.numpy())
    assert any(not np.allclose(o, n.numpy()) for o, n in zip(decision_before, trainer.decision.trainable_weights))


def test_saved_model_serves_logits_and_actions_and_bias_buys_speed(tmp_path):
    trainer = build(chain(), tf.distribute.get_strategy(), SETTINGS)
    serving = RNPServing(trainer.backbone, trainer.decision, 0.0)
    export_saved_model(serving, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    assert set(loaded.signatures) == {"serve", "serve_with_bias", "serving_default"}
    x = images(6)
    groups = []
    for bias in (-10.0, -0.1, 0.0, 0.1, 10.0):
        batch = loaded.signatures["serve_with_bias"](images=tf.constant(x), flops_bias=tf.constant(bias))
        ones = [loaded.signatures["serve_with_bias"](images=tf.constant(x[i : i + 1]), flops_bias=tf.constant(bias))
                for i in range(len(x))]
        np.testing.assert_allclose(np.concatenate([o["logits"] for o in ones]), batch["logits"], atol=1e-4)
        np.testing.assert_array_equal(np.concatenate([o["actions"] for o in ones]), batch["actions"])
        groups.append(float(np.mean(batch["actions"])))
    assert groups == sorted(groups, reverse=True), "a higher bias never computes more groups"
    assert groups[0] == 4 and groups[-1] == 1
    default = loaded.signatures["serve"](images=tf.constant(x))
    np.testing.assert_array_equal(loaded.signatures["serving_default"](images=tf.constant(x))["logits"],
                                  default["logits"])
    np.testing.assert_allclose(default["logits"], serving.serve_with_bias(x, 0.0)["logits"], atol=1e-5)
    # The loaded functions hold a trace for exactly one image (the sliced path, no dispatch)
    # and one for any batch; both give the signatures' answers.
    shapes = {tuple(f.structured_input_signature[0][0].shape) for f in loaded.serve.concrete_functions}
    assert shapes == {(1, *x.shape[1:]), (None, *x.shape[1:])}
    one = loaded.serve(tf.constant(x[:1]))
    np.testing.assert_allclose(one["logits"], default["logits"][:1], atol=1e-4)
    np.testing.assert_array_equal(loaded.serve(tf.constant(x))["actions"], default["actions"])


def test_a_sequential_model_loaded_from_a_file_is_a_chain(tmp_path):
    # Keras calls a loaded Sequential's layers several times while it rebuilds the model.
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 1)), layers.Conv2D(6, 3, padding="same"), layers.BatchNormalization(), layers.ReLU(),
        layers.Conv2D(8, 3, padding="same"), layers.ReLU(), layers.MaxPooling2D(),
        layers.Conv2D(8, 3, padding="same"), layers.ReLU(), layers.GlobalAveragePooling2D(), layers.Dense(5),
    ])
    model.save(tmp_path / "sequential.keras")
    loaded = keras.saving.load_model(tmp_path / "sequential.keras")
    assert len(loaded.layers[0]._inbound_nodes) > 1  # so the check below can fail
    stem, stages, head, channels = split_chain(loaded, 4)
    assert channels == [8, 8] and len(stem) == 3 and [type(l).__name__ for l in head] == ["GlobalAveragePooling2D", "Dense"]


def test_a_chain_inside_a_nested_model_is_refused_by_name():
    body = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(6, 3), keras.layers.Conv2D(8, 3)], name="body")
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(body(inputs))))
    with pytest.raises(PruneError, match="'body/conv2d.*' sits in a nested model"):
        split_chain(model, 2)


def test_a_layer_called_twice_is_not_a_chain():
    conv = keras.layers.Conv2D(4, 3, padding="same")
    inputs = keras.Input((8, 8, 4))
    x = conv(conv(keras.layers.Conv2D(4, 3, padding="same")(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(x)))
    with pytest.raises(PruneError, match="plain chain of layers"):
        split_chain(model, 2)


def test_bad_settings_and_models_are_refused():
    with pytest.raises(PruneError, match="rnp_penalty must be > 0"):
        RNPSettings(penalty=0.0)
    with pytest.raises(PruneError, match="rnp_alpha must be > 0"):
        RNPSettings(alpha=-1.0)
    with pytest.raises(PruneError, match="plain chain of layers"):
        RuntimeBackbone(tiny_resnet(), 4)
    with pytest.raises(PruneError, match=r"--rnp_order must be one of \('norm', 'natural'\)"):
        RNPSettings(order="l2")
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same")(x)
    scores = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(5, 1)(x))  # the last conv gives the scores
    with pytest.raises(PruneError, match="class scores must come from a Dense layer.*'conv2d_2'"):
        split_chain(keras.Model(inputs, scores), 4)
    # Flatten -> BatchNorm -> Dense: the natural order needs nothing of the head; "norm" permutes into a Dense
    head = keras.layers.BatchNormalization()(keras.layers.Flatten()(x))
    *_, head_layers, _ = split_chain(keras.Model(inputs, keras.layers.Dense(5)(head)), 4)
    check_head(head_layers, "natural")
    with pytest.raises(PruneError, match="followed by Dense .* this head is Flatten -> BatchNormalization -> Dense"):
        check_head(head_layers, "norm")


@pytest.mark.parametrize("between, scaled", [((), True), ((keras.layers.BatchNormalization,), False)])
def test_the_classifier_saves_macs_only_when_the_skipped_channels_reach_it_as_zeros(between, scaled):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.ReLU()(keras.layers.Conv2D(4, 3, padding="same")(inputs))
    x = keras.layers.Flatten()(keras.layers.ReLU()(keras.layers.Conv2D(8, 3, padding="same")(x)))
    for make in between:
        x = make()(x)  # a BatchNormalization turns the zeros of uncomputed channels into its beta
    backbone = RuntimeBackbone(keras.Model(inputs, keras.layers.Dense(5, name="out")(x)), 2)
    fewest = np.zeros((3, backbone.steps), "int64")  # one group of two everywhere
    _, head_macs = backbone.mean_layer_costs(fewest)["out"]
    assert head_macs == pytest.approx(backbone.head_first_flops * (0.5 if scaled else 1.0))


def test_the_logged_reward_is_the_current_episodes_not_the_replayed_ones():
    trainer = build(chain(), tf.distribute.get_strategy(), SETTINGS)
    x, y = tf.constant(images(8)), tf.constant(np.arange(8) % 5)
    old = trainer.rollout(x, y, epsilon=1.0)
    trainer.replay.add(old["states"], old["actions"], np.full(old["actions"].shape, -100.0, "float32"))
    episodes = []
    rollout = trainer.rollout
    trainer.rollout = lambda *args, **kwargs: episodes.append(rollout(*args, **kwargs)) or episodes[-1]
    stats = trainer.decision_step(x, y)
    (episode,) = episodes
    expected = step_rewards(episode["actions"], episode["loss"], penalty=SETTINGS.penalty, alpha=trainer.alpha)
    assert stats["reward"] == pytest.approx(float(expected.sum(axis=1).mean()), rel=1e-6)


@pytest.mark.parametrize("flag, message", [
    ("--rnp_penalty=0", "--rnp_penalty (p) must be > 0"),
    ("--rnp_alpha=-0.5", "--rnp_alpha must be > 0"),
    ("--rnp_groups=1", "--rnp_groups must be >= 2"),
    ("--rnp_operating_points=a,b", "comma-separated numbers"),
])
def test_bad_flags_are_refused_with_the_rule(flag, message):
    fv = flags.FlagValues()
    define_flags(fv)
    with pytest.raises(flags.IllegalFlagValueError, match=re.escape(message)):
        fv(["prune", "--method=rnp", "--model=conv4", "--output_dir=/tmp/x", flag])


def test_checkpoint_restores_weights_replay_and_counters(tmp_path):
    trainer = build(chain(), tf.distribute.get_strategy(), SETTINGS)
    x, y = tf.constant(images(8)), tf.constant(np.arange(8) % 5)
    trainer.decision_step(x, y)
    trainer.backbone_step(x, y)
    trainer.history.append({"round": 1})
    path = str(tmp_path / "ckpt.npz")
    trainer.save(path, 1)
    fresh = build(chain(seed=3), tf.distribute.get_strategy(), SETTINGS)
    assert fresh.restore(path) == 1
    for a, b in zip(trainer.backbone.model.weights + trainer.decision.weights + trainer.q_optimizer.variables,
                    fresh.backbone.model.weights + fresh.decision.weights + fresh.q_optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert fresh.q_steps == 1 and fresh.replay.size == 8 and fresh.history == [{"round": 1}]
    np.testing.assert_array_equal(fresh.replay.sample(4)[1], trainer.replay.sample(4)[1])


def test_replay_is_a_ring_of_whole_episodes():
    replay = ReplayBuffer(3, [2, 1], 2)
    for i in range(2):
        replay.add([np.full((2, 2), i), np.full((2, 1), i)], np.full((2, 2), i), np.full((2, 2), -i))
    assert replay.size == 3 and replay.cursor == 1
    assert replay.actions[:, 0].tolist() == [1, 0, 1]
    replay.clear()
    replay.add([np.full((1, 2), 7), np.full((1, 1), 7)], np.full((1, 2), 7), np.full((1, 2), -7))
    assert replay.size == 1 and replay.sample(4)[1].tolist() == [[7, 7]], "nothing from before the clear"


def test_each_round_replays_only_episodes_of_the_backbone_it_trains_on():
    trainer = build(chain(), tf.distribute.get_strategy(), SETTINGS)
    x, y = tf.constant(images(8)), tf.constant(np.arange(8) % 5)
    trainer.decision_step(x, y)
    assert trainer.replay.size == 8
    trainer.new_round()  # after the backbone's fine-tuning (SETTINGS.backbone_steps > 0)
    assert trainer.replay.size == 0
    frozen = build(chain(), tf.distribute.get_strategy(), dataclasses.replace(SETTINGS, backbone_steps=0))
    frozen.decision_step(x, y)
    frozen.new_round()
    assert frozen.replay.size == 8, "a backbone that is never fine-tuned keeps one environment"


def test_a_replay_smaller_than_a_batch_is_refused():
    from keras_prune.methods.rnp.settings import settings_from_config

    config = RunConfig(method="rnp", model="conv4", output_dir="o", batch_size=128, rnp_replay=64)
    with pytest.raises(PruneError, match="--rnp_replay=64 holds fewer episodes than one batch"):
        settings_from_config(config)
    assert settings_from_config(dataclasses.replace(config, rnp_replay=0)).replay == 0


def test_one_mirrored_step(mirrored):
    trainer = build(chain(), mirrored, SETTINGS)
    x, y = tf.constant(images(8)), tf.constant(np.arange(8) % 5)
    episode = trainer.rollout(x, y, epsilon=0.0)
    np.testing.assert_allclose(episode["states"][0], tf.reduce_mean(trainer.backbone.run_stem(x), axis=(1, 2)),
                               atol=1e-5, err_msg="the replicas' shares come back in the batch's order")
    stats = trainer.decision_step(x, y)
    loss, actions = trainer.backbone_step(x, y)
    assert np.isfinite(stats["q_loss"]) and np.isfinite(loss)
    assert actions.shape == (8, 2)
    for variable in trainer.backbone.model.trainable_weights + trainer.decision.trainable_weights:
        first, *others = variable.value.values
        for other in others:
            np.testing.assert_array_equal(first.numpy(), other.numpy(), err_msg="replicas stay in sync")


@pytest.mark.parametrize("model, overrides, message", [
    ("resnet20", {}, "plain chain of layers"),
    ("conv4", {"rnp_groups": 4096}, "--rnp_groups=4096 is more than the"),
    ("conv4", {"export": ("tflite",)}, "drop --export=tflite"),
    ("conv4", {"rnp_order": "l2"}, "--rnp_order must be one of"),
])
def test_a_model_or_export_rnp_cannot_handle_fails_before_pre_training(model, overrides, message, tmp_path,
                                                                       monkeypatch):
    import keras_prune.pipeline as pipeline

    def must_not_train(*args, **kwargs):
        raise AssertionError("the dense model was trained before rnp checked it")

    monkeypatch.setattr(pipeline, "train_classifier", must_not_train)
    config = RunConfig(method="rnp", model=model, output_dir=str(tmp_path / "run"), dataset="mnist5k", verbose=0,
                       **overrides)
    with pytest.raises(PruneError, match=message):
        run(config)


def test_rnp_run_end_to_end_and_resume(tmp_path):
    path = tmp_path / "chain.keras"
    chain(input_shape=(8, 8, 1), classes=10).save(path)
    config = RunConfig(
        method="rnp", model=str(path), output_dir=str(tmp_path / "run"), dataset="digits", pretrain_epochs=0,
        batch_size=64, latency_repeats=2, verbose=0, rnp_rounds=1, rnp_decision_steps=3, rnp_backbone_steps=2,
        rnp_warmup_steps=2, rnp_replay=128, rnp_operating_points="0,0.5",
    )
    report = run(config)
    details = report["method_details"]
    assert [p["flops_bias"] for p in details["operating_points"]] == [0.0, 0.5]
    assert report["pruned"]["flops"] <= report["baseline"]["flops"] + details["decision_net_macs"]
    for plot in details["plots"].values():
        assert os.path.getsize(tmp_path / "run" / plot) > 0
    assert os.path.exists(tmp_path / "run" / CHECKPOINT)
    layers = {row["name"]: row for row in report["layers"]}
    assert sum(row["flops_after"] for row in layers.values()) == pytest.approx(
        report["pruned"]["flops"] - details["decision_net_macs"], abs=len(layers)), "the table adds up to the headline"
    for name in details["prunable_convs"]:  # the mean channels computed
        assert 0 < layers[name]["channels_after"] <= layers[name]["channels_before"]
    served = tf.saved_model.load(str(tmp_path / "run" / "saved_model")).signatures["serve"](
        images=tf.zeros((1, 8, 8, 1)))
    assert served["actions"].shape == (1, 2)
    resumed = run(dataclasses.replace(config, resume=True))
    assert resumed["method_details"]["history"] == details["history"], "no round is repeated"
    from keras_prune.export.report_io import read_state

    trained = read_state(str(tmp_path / "run" / CHECKPOINT))[0]["seconds"]
    assert 0 < trained <= report["search_seconds"] and resumed["search_seconds"] >= trained, (
        "the training the first process checkpointed stays in the search time")
    with open(tmp_path / "run" / "report.json") as f:
        assert json.load(f)["method"] == "rnp"


def test_the_backbone_is_fine_tuned_under_the_decisions_the_served_model_takes():
    from keras_prune.methods.rnp.training import rollout

    trainer = build(chain(), tf.distribute.get_strategy(), SETTINGS)
    rng = np.random.default_rng(0)
    for weight in trainer.decision.weights:  # a decision net whose choice follows the features
        if len(weight.shape) == 2:
            weight.assign(rng.normal(0, 0.5 / np.sqrt(weight.shape[0]), weight.shape).astype("float32"))
    x = tf.constant(images(32) * rng.uniform(0.1, 8, (32, 1, 1, 1)).astype("float32"))  # images far apart
    y = tf.constant(np.arange(32) % 5)
    served = trainer.rollout(x, y, epsilon=0.0)["actions"]
    assert len(np.unique(served)) > 1
    _, _, batch_statistics = rollout(trainer.backbone, trainer.decision, x, epsilon=0.0, flops_bias=0.0, training=True)
    assert (np.asarray(batch_statistics) != served).sum() >= 5, "training-mode features decide otherwise here"
    _, actions = trainer.backbone_step(x, y)
    assert (actions != served).sum() <= 1, "the same decisions (but for a near tie of Q-values in another graph)"
    # At another operating point of the served model, the fine-tuning follows it.
    biased = build(chain(), tf.distribute.get_strategy(), dataclasses.replace(SETTINGS, flops_bias=0.5))
    biased.decision.set_weights(trainer.decision.get_weights())
    biased.backbone_step(x, y)  # one step first: the comparison below is of one backbone, after it
    served = biased.rollout(x, y, epsilon=0.0, flops_bias=0.5)["actions"]
    _, actions = biased.backbone_step(x, y)
    assert (actions != served).sum() <= 1


def test_the_training_stream_has_only_full_batches():
    from keras_prune.methods.rnp.method import full_batches

    train = tf.data.Dataset.from_tensor_slices((images(10), np.arange(10) % 5)).batch(4)  # 4, 4, 2
    shapes = [x.shape[0] for x, _ in full_batches(train, 4).take(10)]
    assert shapes == [4] * 10


def test_a_diverged_loss_is_a_clear_error():
    trainer = build(chain(), tf.distribute.get_strategy(), SETTINGS)
    x, y = tf.constant(np.full((4, 8, 8, 1), np.nan, "float32")), tf.constant(np.arange(4) % 5)
    with pytest.raises(TrainingDivergedError, match="rnp_backbone_learning_rate"):
        trainer.backbone_step(x, y)


def test_operating_points_that_would_print_on_top_of_each_other_share_one_label():
    # (mean M MACs, accuracy %, bias), sorted by MACs, as the benchmark's sweep came out.
    points = [(10.5, 97.7, 0.5), (10.84, 97.8, 0.3), (10.84, 97.8, 0.2), (10.94, 97.8, 0.1),
              (12.0, 97.8, 0.05), (14.5, 98.2, 0.0), (27.4, 98.6, -0.1), (47.4, 97.9, -0.2)]
    clusters = _label_clusters(points)
    assert [biases for _, biases in clusters] == [[0.5], [0.3, 0.2, 0.1, 0.05], [0.0], [-0.1], [-0.2]]
    assert clusters[1][0] == (10.84, 97.8)
