"""Network Slimming: the L1 penalty on BatchNorm scales, the global |gamma| ranking, the run."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_prune.data import load_dataset
from keras_prune.errors import PruneError
from keras_prune.graph import analyze
from keras_prune.methods.l1 import select_groups
from keras_prune.methods.slimming import bn_scale_scores, gamma_l1, sparsity_train
from keras_prune.pipeline import RunConfig, run

from conftest import tiny_resnet


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", batch_size=64, seed=0)


def test_gamma_penalty_is_on_inside_the_block_and_off_after():
    model = tiny_resnet()
    assert not model.losses
    with gamma_l1(model, 1e-2) as layers:
        assert len(layers) == 4
        expected = sum(1e-2 * np.abs(layer.gamma.numpy()).sum() for layer in layers)
        assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    assert not model.losses


def test_residual_groups_sum_the_scales_of_every_batchnorm():
    model = tiny_resnet()
    model.get_layer("stem_bn").gamma.assign(np.full(8, 0.25, "float32"))
    model.get_layer("block_2_bn").gamma.assign(-np.arange(8, dtype="float32"))
    graph = analyze(model)
    groups = select_groups(graph, prune_residual=True)
    scores = bn_scale_scores(graph, groups)
    residual = next(g for g in groups if len(g.producers) > 1)
    np.testing.assert_allclose(scores[residual.id], 0.25 + np.arange(8))
    assert set(scores) == {g.id for g in groups}


def test_sparsity_training_shrinks_the_scales(digits):
    strategy = tf.distribute.get_strategy()

    def mean_gamma(strength):
        keras.utils.set_random_seed(0)
        model = tiny_resnet()
        sparsity_train(model, digits, strategy, epochs=2, strength=strength, learning_rate=0.05, verbose=0)
        return np.mean([np.abs(layer.gamma.numpy()).mean() for layer in model.layers if "bn" in layer.name])

    assert mean_gamma(5e-2) < 0.8 * mean_gamma(0.0)


@pytest.mark.parametrize("schedule, final_rate", [("constant", 0.05), ("step", 0.0005)])
def test_sparsity_training_follows_the_given_schedule(digits, schedule, final_rate):
    model = tiny_resnet()
    sparsity_train(
        model, digits, tf.distribute.get_strategy(), epochs=1, strength=1e-4, learning_rate=0.05, schedule=schedule,
        verbose=0,
    )
    assert float(model.optimizer.learning_rate) == pytest.approx(final_rate)


def test_a_model_without_batchnorm_is_a_clear_error(digits):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(x))
    with pytest.raises(PruneError, match="--method=l1"):
        sparsity_train(keras.Model(inputs, outputs), digits, tf.distribute.get_strategy(), epochs=1, strength=1e-4, learning_rate=0.01)


def test_slimming_run_prunes_to_the_target(tmp_path, monkeypatch):
    import keras_prune.methods.slimming as slimming

    schedules = []
    real_sparsity_train = slimming.sparsity_train

    def recording(*args, **kwargs):
        schedules.append((kwargs["schedule"], kwargs["weight_decay"]))
        return real_sparsity_train(*args, **kwargs)

    monkeypatch.setattr(slimming, "sparsity_train", recording)
    path = tmp_path / "tiny.keras"
    tiny_resnet(width=16).save(path)
    report = run(
        RunConfig(
            method="slimming",
            model=str(path),
            output_dir=str(tmp_path / "run"),
            dataset="digits",
            target_flops=0.6,
            pretrain_epochs=0,
            epochs=1,
            finetune_epochs=1,
            pretrain_schedule="step",
            pretrain_weight_decay=1e-4,
            latency_repeats=2,
            export=("keras",),
            verbose=0,
        )
    )
    assert schedules == [("step", 1e-4)], "the sparsity training is a training from scratch: pre-training settings"
    assert abs(report["flops_ratio"] - 0.6) <= 0.05 * 0.6
    assert report["method_details"]["groups_without_batchnorm"] == 0
    assert report["search_seconds"] > 0 and report["retrain_seconds"] > 0


def test_slimming_trains_from_scratch_not_from_the_pre_trained_reference(tmp_path, monkeypatch):
    import keras_prune.methods.slimming as slimming
    from keras_prune.data import load_dataset
    from keras_prune.models import get_model

    started, real_sparsity_train = [], slimming.sparsity_train

    def recording(model, *args, **kwargs):
        started.append([w.numpy().copy() for w in model.weights])
        return real_sparsity_train(model, *args, **kwargs)

    monkeypatch.setattr(slimming, "sparsity_train", recording)
    run(RunConfig(method="slimming", model="conv4", output_dir=str(tmp_path / "run"), dataset="digits",
                  target_flops=0.6, pretrain_epochs=1, epochs=1, finetune_epochs=0, max_batches=2,
                  latency_repeats=2, export=("keras",), verbose=0))
    info = load_dataset("digits", batch_size=64, seed=0).info
    initial = get_model("conv4", info.input_shape, info.num_classes, seed=0)
    assert len(started[0]) == len(initial.weights)
    for value, weight in zip(started[0], initial.weights):
        np.testing.assert_array_equal(value, weight.numpy(), err_msg=weight.path)
    reference = keras.models.load_model(tmp_path / "run" / "baseline.keras")
    assert any(not np.array_equal(value, w.numpy()) for value, w in zip(started[0], reference.weights))


def test_an_impossible_budget_fails_before_sparsity_training(tmp_path, monkeypatch):
    import keras_prune.methods.slimming as slimming

    def must_not_train(*args, **kwargs):
        raise AssertionError("sparsity training ran before the budget was checked")

    monkeypatch.setattr(slimming, "sparsity_train", must_not_train)
    path = tmp_path / "tiny.keras"
    tiny_resnet(width=16).save(path)
    config = RunConfig(
        method="slimming", model=str(path), output_dir=str(tmp_path / "run"), dataset="digits", target_flops=0.05,
        pretrain_epochs=0, epochs=1, finetune_epochs=0, latency_repeats=2, export=("keras",), round_to=8, verbose=0,
    )
    with pytest.raises(PruneError, match=r"smallest reachable value is .*A smaller --round_to lowers it"):
        run(config)


def test_two_replicas_carry_the_penalty_once(digits, mirrored):
    # One step of L1 3.0 at lr 0.1 moves every scale by 0.3 on one device; on two replicas, which
    # share the batch, the penalty must act once too (not once per replica).
    data = digits.limited(1, 64)

    def scales_after_one_step(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = tiny_resnet(input_shape=data.info.input_shape, classes=data.info.num_classes)
        sparsity_train(model, data, strategy, epochs=1, strength=3.0, learning_rate=0.1, verbose=0)
        return np.concatenate([np.asarray(layer.gamma.numpy()) for layer in model.layers
                               if isinstance(layer, keras.layers.BatchNormalization)])

    one = scales_after_one_step(tf.distribute.OneDeviceStrategy("/cpu:0"))
    two = scales_after_one_step(mirrored)
    assert np.abs(one - 0.7).max() < 0.1, "the penalty's step dominates the task's at this strength"
    np.testing.assert_allclose(two, one, atol=0.05)


@pytest.mark.parametrize("prune_residual, hint", [(False, "Use --prune_residual"), (True, None)])
def test_batch_norms_only_on_the_residual_stream_point_to_prune_residual(prune_residual, hint):
    from keras_prune.methods.slimming import _ranked_groups

    inputs = keras.Input((8, 8, 3))
    stream = keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, padding="same")(inputs)))
    stream = keras.layers.Add()([stream, keras.layers.Conv2D(4, 3, padding="same")(stream)])
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(stream)))
    config = RunConfig(method="slimming", model="m", output_dir="o", target_flops=0.9, prune_residual=prune_residual)
    if hint is None:
        _, _, groups = _ranked_groups(model, config)
        assert len(groups) == 1
    else:
        with pytest.raises(PruneError, match=hint):
            _ranked_groups(model, config)
