"""OLMP: the DNS mask rule, frozen statistics, straight-through training, triggers, candidate
evaluation on an untouched snapshot, the death penalty, checkpoint/resume of an interrupted
search, the run end to end, bad settings, and a 2-replica MirroredStrategy."""

import dataclasses
import json
import os

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from keras_prune.cli.flags import config_from_flags, define_flags
from keras_prune.data import load_dataset
from keras_prune.errors import PruneError
from keras_prune.layers import MaskedConv2D, MaskedDense
from keras_prune.methods import olmp
from keras_prune.methods.base import RunContext
from keras_prune.methods.olmp import (
    DNSLayers,
    LayerStatistics,
    MaskedSGD,
    OLMPLoop,
    OLMPSettings,
    PruningTuner,
    hysteresis,
    to_masked,
    trigger_probability,
)
from keras_prune.methods.olmp.dns import thresholds
from keras_prune.methods.olmp.method import emptied_layers_warning
from keras_prune.pipeline import RunConfig, run

# Keras Tuner 1.4.8 calls threading.currentThread().getName() on every oracle call.
pytestmark = [
    pytest.mark.filterwarnings("ignore:currentThread:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:getName:DeprecationWarning"),
]

# A tiny search: 1 start point + 3 generations of 4; the only NCS call is at iteration 0.
TINY = dict(iterations=6, prune_stop=5, prune_interval=10, population=4, budget=13, sigma=((0, 2.0),),
            crate_bounds=(0.0, 4.0), delta=0.1, weight_decay=5e-4)


def _net():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(16, activation="relu", name="fc1")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="fc2")(x), name="tiny")


@pytest.fixture(scope="module")
def pretrained():
    """Weights of `_net` after one epoch on digits (plain Keras fit), made once."""
    keras.utils.set_random_seed(0)
    data = load_dataset("digits", batch_size=64, seed=0)
    model = _net()
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.train, epochs=2, verbose=0)
    return model.get_weights()


def _setup(weights, strategy=None, **overrides):
    """A fresh masked copy of the pretrained net, its DNS layers, trainer and data."""
    strategy = strategy or tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = _net()
        model.set_weights(weights)
        masked, names = to_masked(model)
    dns = DNSLayers(masked, names)
    settings = OLMPSettings(**{**TINY, **overrides})
    trainer = MaskedSGD(masked, dns, strategy, learning_rate=settings.learning_rate,
                        lr_policy=settings.lr_policy, weight_decay=settings.weight_decay)
    return masked, dns, trainer, settings, load_dataset("digits", batch_size=64, seed=0)


def _batch(data):
    x, y = next(iter(data.train))
    return np.asarray(x), np.asarray(y)


def _masks(dns):
    return [np.array(m.numpy()) for _, _, m in dns.pairs()]


# ------------------------------------------------------------------- DNS rules


def test_hysteresis_prunes_at_0_9_t_and_splices_above_1_1_t():
    weight = np.array([0.9, -0.9, 0.91, -0.5, 1.1, -1.1, 1.11, -2.0], "float32")
    mask = np.array([1, 1, 1, 1, 0, 0, 0, 0], "float32")
    new = np.asarray(hysteresis(weight, mask, 1.0))
    # kept: |w| <= 0.9 t goes, above stays; pruned: |w| > 1.1 t comes back, at 1.1 t stays out.
    np.testing.assert_array_equal(new, [0, 0, 1, 0, 0, 0, 1, 1])
    # Between 0.9 t and 1.1 t nothing changes, whichever state an entry is in.
    band = np.array([0.95, 1.0, 1.05], "float32")
    np.testing.assert_array_equal(hysteresis(band, np.ones(3, "float32"), 1.0), np.ones(3))
    np.testing.assert_array_equal(hysteresis(band, np.zeros(3, "float32"), 1.0), np.zeros(3))


def test_threshold_is_mu_plus_c_sigma_floored_at_zero():
    np.testing.assert_allclose(thresholds([1.0, 1.0], [0.5, 0.5], [2.0, -4.0]), [2.0, 0.0])
    # t = 0 prunes exact zeros only and splices every non-zero weight back.
    np.testing.assert_array_equal(hysteresis(np.array([0.0, 0.1], "float32"), np.array([1.0, 0.0], "float32"), 0.0),
                                  [0, 1])


def test_statistics_pool_kernel_and_bias_and_stay_frozen(pretrained):
    masked, dns, trainer, settings, data = _setup(pretrained)
    layer = masked.get_layer("fc2")
    values = np.concatenate([layer.kernel.numpy().ravel(), layer.bias.numpy().ravel()])
    values = values[values != 0]  # as in OLMP's Caffe layers, exact zeros do not count
    mu = np.mean(np.abs(values))
    expected = LayerStatistics(mu, np.sqrt(np.mean(values**2) - mu**2))
    got = dns.statistics[dns.names.index("fc2")]
    np.testing.assert_allclose([got.mu, got.sigma], [expected.mu, expected.sigma], rtol=1e-6)
    before = list(dns.statistics)
    x, y = trainer.distribute(*_batch(data))
    for _ in range(3):
        trainer.step(x, y, dns.thresholds(np.ones(3)), np.ones(3, bool))
    assert dns.statistics == before, "mu and sigma are never recomputed"
    fresh = DNSLayers(masked, dns.names).statistics
    assert fresh != before, "the weights moved, so statistics computed now would differ"


def test_to_masked_copies_weights_and_leaves_the_original_alone(pretrained):
    masked, dns, trainer, _, data = _setup(pretrained)
    assert dns.names == ["conv", "fc1", "fc2"]
    assert [type(layer) for layer in dns.layers] == [MaskedConv2D, MaskedDense, MaskedDense]
    assert all(layer.straight_through for layer in dns.layers)
    original = _net()
    original.set_weights(pretrained)
    x, _ = _batch(data)
    np.testing.assert_allclose(masked(x), original(x), atol=1e-6)


def test_straight_through_gradient_reaches_pruned_weights(pretrained):
    masked, dns, trainer, _, data = _setup(pretrained, weight_decay=0.0)
    x, y = trainer.distribute(*_batch(data))
    trainer.update_masks(dns.thresholds(np.full(3, 0.5)), np.ones(3, bool))
    layer = masked.get_layer("fc1")
    pruned = layer.prune_mask.numpy() == 0
    assert pruned.any()
    before = layer.kernel.numpy()
    trainer.step(x, y, dns.thresholds(np.full(3, 0.5)), np.zeros(3, bool))
    moved = layer.kernel.numpy() != before
    # Pruned weights learn as often as kept ones (a weight stays put only where its input
    # or its unit was inactive on the whole batch); no weight decay moves them here.
    assert moved[pruned].mean() > 0.5 * moved[~pruned].mean() > 0
    assert np.array_equal(layer.prune_mask.numpy() == 0, pruned), "untriggered masks do not move"


def test_trigger_probability_and_frozen_masks_after_prune_stop(pretrained):
    assert trigger_probability(2e-4, 0) == 1.0
    assert trigger_probability(2e-4, 5000) == pytest.approx(0.5)
    assert trigger_probability(2e-5, 50000) == pytest.approx(0.5)
    masked, dns, trainer, settings, data = _setup(pretrained, iterations=100000, prune_stop=60000)
    np.testing.assert_allclose(dns.gammas, [2e-5, 2e-4, 2e-4], err_msg="conv is triggered 10x less often")
    loop = OLMPLoop(trainer, dns, data.train, settings, workdir="unused")
    draws = np.array([loop._sample_triggers(5000) for _ in range(4000)])
    np.testing.assert_allclose(draws.mean(axis=0), [1 / 1.1, 0.5, 0.5], atol=0.03)
    assert not np.array([loop._sample_triggers(60000) for _ in range(100)]).any()


# ------------------------------------------------------------------- NCS evaluation


def test_candidate_evaluation_leaves_masks_unchanged_and_matches_applying_them(pretrained):
    masked, dns, trainer, _, data = _setup(pretrained)
    x, y = trainer.distribute(*_batch(data))
    snapshot = _masks(dns)
    candidate = dns.thresholds([0.3, 1.5, 0.7])
    triggered = np.array([True, True, False])
    accuracy, kept = trainer.evaluate(x, y, candidate, triggered)
    for before, after in zip(snapshot, _masks(dns)):
        np.testing.assert_array_equal(before, after)
    trainer.update_masks(candidate, triggered)
    applied_accuracy, applied_kept = trainer.evaluate(x, y, candidate, np.zeros(3, bool))
    assert (applied_accuracy, applied_kept) == (accuracy, kept)
    assert applied_kept == int(dns.kept().sum()) < dns.total
    for before, after in zip(snapshot[-2:], _masks(dns)[-2:]):
        np.testing.assert_array_equal(before, after, err_msg="fc2 was not searched: its masks stay")


def test_death_penalty_when_batch_accuracy_drops_by_more_than_delta(pretrained):
    masked, dns, trainer, settings, data = _setup(pretrained, delta=0.05)
    batch = _batch(data)
    loop = OLMPLoop(trainer, dns, data.train, settings, workdir="unused")
    # As in the loop: the triggered layers' masks are updated, then the reference is measured.
    trainer.update_masks(dns.thresholds(loop.crates), np.ones(3, bool))
    reference, _ = trainer.evaluate(*trainer.distribute(*batch), dns.thresholds(loop.crates), np.zeros(3, bool))
    fitness = loop.fitness_function([0, 1, 2], reference, batch)
    current = fitness(loop.crates)
    assert current == dns.kept().sum() / dns.total < 1, "c = 0.001 already prunes the weights below 0.9 mu"
    assert fitness(np.full(3, 10.0)) == olmp.settings.DEATH_PENALTY, "pruning everything breaks the batch"
    strict = loop.fitness_function([0, 1, 2], 1.0 + 2 * settings.delta, batch)
    assert strict(loop.crates) == olmp.settings.DEATH_PENALTY, "infeasible when the bound is unreachable"


# ------------------------------------------------------------------- loop, tuner, resume


class _Killed(keras_tuner.errors.FatalError):
    """Stands for kill -9 during a trial: Keras Tuner lets it through."""


def _loop(weights, workdir, **overrides):
    keras.utils.set_random_seed(0)
    masked, dns, trainer, settings, data = _setup(weights, **overrides)
    return OLMPLoop(trainer, dns, data.train, settings, workdir=workdir, log=lambda message: None, log_every=3)


def test_interrupted_search_resumes_and_finds_the_same_c_rates(pretrained, tmp_path, monkeypatch):
    reference = _loop(pretrained, tmp_path / "a").run()
    assert reference.iteration == TINY["iterations"] and len(reference.calls) == 1
    call = reference.calls[0]
    assert call["evaluations"] == 13 and call["generations"] == 3 and len(call["trajectory"]) == 4
    project = tmp_path / "a" / "tuner" / "ncs_0000000"
    assert len(list(project.glob("trial_*/trial.json"))) == 13, "every candidate is a Keras Tuner trial"

    calls = []
    original = PruningTuner.run_trial

    def dies_at_trial_6(self, trial, *args, **kwargs):
        calls.append(trial.trial_id)
        if len(calls) == 7:
            raise _Killed("kill -9")
        return original(self, trial, *args, **kwargs)

    monkeypatch.setattr(PruningTuner, "run_trial", dies_at_trial_6)
    with pytest.raises(_Killed):
        _loop(pretrained, tmp_path / "b").run()
    monkeypatch.setattr(PruningTuner, "run_trial", original)
    with np.load(tmp_path / "b" / "checkpoint.npz") as archive:
        state = json.loads(str(archive["state"]))
        assert state["pending"]["iteration"] == 0 and "batch/x" in archive.files

    calls.clear()
    monkeypatch.setattr(PruningTuner, "run_trial", lambda self, trial, *a, **k: (calls.append(trial.trial_id),
                                                                                   original(self, trial))[1])
    resumed = _loop(pretrained, tmp_path / "b").run(resume=True)
    assert len(calls) == 13 - 6, "the six finished trials are kept, the one in flight is re-run"
    assert resumed.iteration == TINY["iterations"]
    got = resumed.calls[0]
    for key in ("crates_after", "best_fitness", "trajectory", "evaluations", "reference_accuracy"):
        assert got[key] == call[key], key

    again = _loop(pretrained, tmp_path / "b").run(resume=True)
    assert again.calls == resumed.calls and again.iteration == resumed.iteration
    for before, after in zip(resumed.trainer.state_arrays().values(), again.trainer.state_arrays().values()):
        np.testing.assert_array_equal(before, after)


def test_a_search_resumed_under_the_held_out_constraint_steps_on_the_training_batch(pretrained, tmp_path,
                                                                                  monkeypatch):
    def held_out_loop(workdir):
        keras.utils.set_random_seed(0)
        masked, dns, trainer, settings, data = _setup(pretrained, constraint="validation", constraint_examples=50)
        return OLMPLoop(trainer, dns, data.train, settings, validation=data.validation, workdir=workdir,
                        log=lambda message: None)

    steps, step = [], MaskedSGD.step
    monkeypatch.setattr(MaskedSGD, "step", lambda self, x, y, *a: (steps.append(self.gather(x, y)[1]),
                                                                   step(self, x, y, *a))[1])
    held_out_loop(tmp_path / "a").run()
    first_step = steps[0]
    assert len(first_step) == 64, "iteration 0's step is on a training batch"

    original = PruningTuner.run_trial

    def killed(self, trial, *args, **kwargs):
        raise _Killed("kill -9")

    monkeypatch.setattr(PruningTuner, "run_trial", killed)
    with pytest.raises(_Killed):
        held_out_loop(tmp_path / "b").run()
    monkeypatch.setattr(PruningTuner, "run_trial", original)
    steps.clear()
    held_out_loop(tmp_path / "b").run(resume=True)
    np.testing.assert_array_equal(steps[0], first_step, err_msg="not the 50 held-out examples the search measured")


def test_validation_constraint_searches_on_held_out_examples_in_turn(pretrained, tmp_path, monkeypatch):
    masked, dns, trainer, settings, data = _setup(pretrained, constraint="validation", constraint_examples=50)
    loop = OLMPLoop(trainer, dns, data.train, settings, validation=data.validation, workdir=tmp_path,
                    log=lambda message: None)
    x_val, y_val = (np.concatenate(parts) for parts in zip(*data.validation.as_numpy_iterator()))
    assert 100 < len(y_val) < 150
    batches = loop._held_out_batches()
    order = np.concatenate([np.arange(len(y_val)), np.arange(len(y_val))])
    for start in (0, 50, 100, 150):  # the third batch wraps around to the first examples
        x, y = next(batches)
        np.testing.assert_array_equal(x, x_val[order[start:start + 50]])
        np.testing.assert_array_equal(y, y_val[order[start:start + 50]])

    loop.calls = [{}, {}]  # as after two NCS calls: a resumed stream goes on from the third batch
    np.testing.assert_array_equal(next(loop._held_out_batches())[0], x_val[order[100:150]])
    loop.calls = []

    searched = []
    begin = OLMPLoop._begin_search
    monkeypatch.setattr(OLMPLoop, "_begin_search", lambda self, it, triggered, batch, step_batch: (
        searched.append(batch), begin(self, it, triggered, batch, step_batch))[1])
    loop.run()
    assert len(searched) == len(loop.calls) == 1
    np.testing.assert_array_equal(searched[0][0], x_val[:50])

    whole = OLMPLoop(trainer, dns, data.train, dataclasses.replace(settings, constraint_examples=10_000),
                     validation=data.validation, workdir=tmp_path / "whole")
    assert len(next(whole._held_out_batches())[1]) == len(y_val), "never more than the split holds"
    with pytest.raises(PruneError, match="no validation split.*--olmp_constraint=batch"):
        OLMPLoop(trainer, dns, data.train, settings, workdir=tmp_path)
    empty = OLMPLoop(trainer, dns, data.train, settings, validation=data.validation.take(0), workdir=tmp_path)
    with pytest.raises(PruneError, match="validation split is empty"):
        empty.run()
    assert empty.iteration == 0, "reported before any training"


def test_resume_reads_a_checkpoint_written_before_a_setting_existed(pretrained, tmp_path):
    from keras_prune.export.report_io import read_state, write_state

    finished = _loop(pretrained, tmp_path).run()
    state, arrays = read_state(finished.checkpoint_path)
    for key in ("constraint", "constraint_examples"):
        del state["settings"][key]
    write_state(finished.checkpoint_path, state, arrays)
    assert _loop(pretrained, tmp_path).run(resume=True).calls == finished.calls
    state["settings"]["constraint"] = "validation"
    write_state(finished.checkpoint_path, state, arrays)
    with pytest.raises(PruneError, match=r"other settings \(constraint\)"):
        _loop(pretrained, tmp_path).run(resume=True)


def test_bare_ncs_path_saves_its_state_per_generation(pretrained, tmp_path):
    loop = _loop(pretrained, tmp_path, use_tuner=False).run()
    state = json.loads((tmp_path / "tuner" / "ncs_0000000.json").read_text())
    assert state["generation"] == 3 and state["trajectory"] == loop.calls[0]["trajectory"]
    assert not list(tmp_path.glob("tuner/*/trial_*")), "no Keras Tuner trials on the bare path"


def test_legacy_ncs_never_moves_the_population(pretrained, tmp_path):
    loop = _loop(pretrained, tmp_path, use_tuner=False, legacy_ncs=True).run()
    state = json.loads((tmp_path / "tuner" / "ncs_0000000.json").read_text())
    start = np.full((4, 3), olmp.settings.INITIAL_CRATE)
    np.testing.assert_allclose(state["population"], start)
    assert loop.calls[0]["best_fitness"] <= loop.calls[0]["trajectory"][0]


def test_two_replica_mirrored_strategy_matches_one_device(pretrained, tmp_path, mirrored):
    assert mirrored.num_replicas_in_sync == 2
    one = _setup(pretrained)
    two = _setup(pretrained, strategy=mirrored)
    batch = _batch(one[4])
    candidate = one[1].thresholds([0.5, 1.0, 1.5])
    triggered = np.array([True, False, True])
    assert one[2].evaluate(*one[2].distribute(*batch), candidate, triggered) == two[2].evaluate(
        *two[2].distribute(*batch), candidate, triggered
    )
    masked, dns, trainer, settings, data = two
    loop = OLMPLoop(trainer, dns, data.train, settings, workdir=tmp_path, log=lambda message: None).run()
    assert loop.calls and dns.total / dns.kept().sum() > 1
    for _, weight, mask in dns.pairs():
        replicas = [np.asarray(v) for v in mirrored.experimental_local_results(mask.value)]
        np.testing.assert_array_equal(replicas[0], replicas[1])
        weights = [np.asarray(v) for v in mirrored.experimental_local_results(weight.value)]
        np.testing.assert_allclose(weights[0], weights[1], rtol=1e-6)


# ------------------------------------------------------------------- the run and bad input


def test_pipeline_run_exports_a_plain_model_with_zeros_where_pruned(tmp_path):
    out = tmp_path / "run"
    config = RunConfig(
        method="olmp", model="lenet300_100", output_dir=str(out), dataset="digits", pretrain_epochs=1,
        batch_size=64, latency_repeats=2, export=("keras",), verbose=0, weight_decay=5e-4,
        olmp_iterations=30, olmp_prune_stop=20, olmp_prune_interval=10, olmp_population=4, olmp_budget=9,
    )
    report = run(config)
    details = report["method_details"]
    assert details["compression_ratio"] > 1
    assert details["ncs_calls"] >= 1 and len(details["ncs_trajectory"]) >= 2
    assert [row["layer"] for row in details["layers"]] == ["ip1", "ip2", "ip3"]
    assert emptied_layers_warning(details) is None
    assert all(0 < row["kernel_kept"] <= row["kept"] for row in details["layers"])
    emptied = {**details, "layers": [{**details["layers"][0], "kernel_kept": 0}, *details["layers"][1:]]}
    assert emptied_layers_warning(emptied).startswith("olmp: warning: ip1 kept no weight")
    exported = keras.models.load_model(out / "model.keras")
    dense = [layer for layer in exported.layers if isinstance(layer, keras.layers.Dense)]
    assert [type(layer) for layer in dense] == [keras.layers.Dense] * 3, "stripped to plain Keras layers"
    nonzero = sum(int(np.count_nonzero(w)) for layer in dense for w in layer.get_weights())
    assert nonzero == details["nonzero_params"]
    assert report["pruned"]["nonzero_params"] == nonzero
    for name in ("olmp_ncs_trajectory.png", "olmp_kept_per_layer.png"):
        assert (out / "plots" / name).stat().st_size > 0
    assert list((out / "olmp" / "tuner").glob("ncs_*/trial_*/trial.json"))
    assert list((out / "tensorboard").glob("events.*"))


def test_bad_settings_are_clear_errors():
    with pytest.raises(PruneError, match=r"olmp_delta in \(0, 1\).*Received: olmp_delta=1.5"):
        OLMPSettings(delta=1.5)
    with pytest.raises(PruneError, match="lower < upper"):
        OLMPSettings(crate_bounds="10,0")
    with pytest.raises(PruneError, match="'lower,upper'"):
        OLMPSettings(crate_bounds="ten")
    with pytest.raises(PruneError, match="start at iteration 0"):
        OLMPSettings(sigma="5@100")
    with pytest.raises(PruneError, match="olmp_prune_stop <= olmp_iterations"):
        OLMPSettings(iterations=10, prune_stop=20)
    with pytest.raises(PruneError, match=r"olmp_constraint to be one of \('batch', 'validation'\)"):
        OLMPSettings(constraint="test")
    with pytest.raises(PruneError, match="olmp_constraint_examples to be an integer >= 1"):
        OLMPSettings(constraint_examples=0)
    assert OLMPSettings(sigma="5@0,0.5@10000").sigma_at(9999) == 5.0
    assert OLMPSettings(sigma="5@0,0.5@10000").sigma_at(10000) == 0.5
    with pytest.raises(PruneError, match="more than 0.0002 apart"):  # NCS could not place a candidate
        OLMPSettings(crate_bounds="0,0.0002")
    for sigma in (None, [5.0]):
        with pytest.raises(PruneError, match=r"\(iteration, value\) pairs"):
            OLMPSettings(sigma=sigma)
    with pytest.raises(PruneError, match="N > 0. Received: olmp_lr_policy='step@0'"):
        OLMPSettings(lr_policy=("step", 0))
    assert OLMPSettings(lr_policy=("step", 7000)).lr_policy == ("step", 7000)
    assert OLMPSettings(lr_policy=("inv", 0)).lr_policy == ("inv", 0)


@pytest.mark.parametrize("model, environment, message", [
    ("lenet5", {"olmp_crate_bounds": "0,0.0001"}, "more than 0.0002 apart"),
    ("lenet5", {"olmp_tuner": False, "KERASTUNER_ORACLE_IP": "127.0.0.1"}, "Drop --noolmp_tuner"),
])
def test_what_olmp_cannot_run_fails_before_pre_training(model, environment, message, tmp_path, monkeypatch):
    import keras_prune.pipeline as pipeline

    def must_not_train(*args, **kwargs):
        raise AssertionError("the dense model was trained before olmp checked its settings")

    monkeypatch.setattr(pipeline, "train_classifier", must_not_train)
    overrides = {k: v for k, v in environment.items() if k.startswith("olmp_")}
    for name in set(environment) - set(overrides):
        monkeypatch.setenv(name, environment[name])
    config = RunConfig(method="olmp", model=model, output_dir=str(tmp_path / "run"), dataset="mnist5k", verbose=0,
                       **overrides)
    with pytest.raises(PruneError, match=message):
        run(config)


def test_a_model_without_dense_or_conv_layers_is_refused_before_pre_training():
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Flatten()(keras.layers.MaxPooling2D()(inputs)))
    with pytest.raises(PruneError, match="has none at its top level"):
        olmp.preflight(model, RunConfig(method="olmp", model="m", output_dir="o"))


def test_a_model_with_one_prunable_layer_is_refused_before_pre_training():
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(10, name="only")(keras.layers.Flatten()(inputs)))
    with pytest.raises(PruneError, match="one prunable top-level layer \\('only'\\): NCS would never run"):
        olmp.preflight(model, RunConfig(method="olmp", model="m", output_dir="o"))


def test_training_seconds_are_ticked_into_every_checkpoint(pretrained, tmp_path, monkeypatch):
    import types

    import keras_prune.methods.olmp.loop as loop_module

    masked, dns, trainer, settings, data = _setup(pretrained)
    loop = OLMPLoop(trainer, dns, data.train, settings, workdir=tmp_path, log=lambda message: None)
    now = [100.0]
    monkeypatch.setattr(loop_module, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    loop._clock = (100.0, 0.0)  # as run() sets it
    now[0], loop.search_seconds = 130.0, 10.0  # 30 s since, 10 of them searching
    loop.save()
    assert loop.train_seconds == 20.0
    resumed = OLMPLoop(trainer, dns, data.train, settings, workdir=tmp_path, log=lambda message: None)
    resumed.restore()
    assert resumed.train_seconds == 20.0, "a killed process's training time survives it"


@pytest.mark.parametrize(
    "arg, message",
    [
        ("--olmp_delta=0", "--olmp_delta must be in (0, 1)"),
        ("--olmp_delta=1", "--olmp_delta must be in (0, 1)"),
        ("--olmp_crate_bounds=5,1", "lower < upper"),
        ("--olmp_sigma=fast", "value@iteration"),
        ("--olmp_lr_policy=cosine", "olmp_lr_policy"),
        ("--olmp_prune_stop=40000", "--olmp_prune_stop must be <= --olmp_iterations"),
        ("--olmp_constraint=test", "olmp_constraint"),
        ("--olmp_constraint_examples=0", "--olmp_constraint_examples must be >= 1"),
    ],
)
def test_bad_flags_are_rejected_with_the_reason(arg, message, tmp_path):
    fv = flags.FlagValues()
    define_flags(fv)
    with pytest.raises(flags.IllegalFlagValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fv(["prune", "--method=olmp", "--model=lenet5", f"--output_dir={tmp_path}", arg])


def test_flags_reach_the_settings(tmp_path):
    fv = flags.FlagValues()
    define_flags(fv)
    fv(["prune", "--method=olmp", "--model=lenet5", f"--output_dir={tmp_path}", "--olmp_crate_bounds=0,20",
        "--olmp_sigma=5@0,0.5@10000", "--olmp_lr_policy=step@7000", "--noolmp_tuner",
        "--olmp_constraint=validation", "--olmp_constraint_examples=128"])
    settings = OLMPSettings.from_config(config_from_flags(fv))
    assert settings.constraint == "validation" and settings.constraint_examples == 128
    assert settings.crate_bounds == (0.0, 20.0) and settings.sigma == ((0, 5.0), (10000, 0.5))
    assert settings.lr_policy == ("step", 7000) and settings.use_tuner is False


@pytest.mark.parametrize(
    "recipe, expected",
    [
        ("olmp_lenet300_100_mnist.flags", dict(delta=0.08, crate_bounds=(0.0, 10.0), sigma=((0, 5.0),))),
        ("olmp_lenet5_mnist.flags", dict(delta=0.05, crate_bounds=(0.0, 20.0), sigma=((0, 5.0), (10000, 0.5)))),
        ("olmp_alexnet_caltech.flags", dict(delta=0.08, iterations=15001, prune_stop=10000, prune_interval=250,
                                            population=8, sigma=((0, 5.0), (7000, 0.5)), lr_policy=("step", 7000))),
    ],
)
def test_recipes_carry_the_paper_settings(recipe, expected, tmp_path):
    fv = flags.FlagValues()
    define_flags(fv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fv(["prune", f"--flagfile={os.path.join(root, 'flags', recipe)}", f"--output_dir={tmp_path}"])
    config = config_from_flags(fv)
    settings = OLMPSettings.from_config(config)
    assert config.method == "olmp" and settings.budget == 1600 and settings.weight_decay == 5e-4
    for key, value in expected.items():
        assert getattr(settings, key) == value, key


def test_run_rejects_bad_settings_and_models_without_prunable_layers(tmp_path):
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    data = load_dataset("digits", batch_size=64, seed=0)
    config = RunConfig(method="olmp", model="x", output_dir=str(tmp_path))
    ctx = RunContext(strategy, dataclasses.replace(config, olmp_crate_bounds="3,3"), str(tmp_path), None)
    with pytest.raises(PruneError, match="lower < upper"):
        olmp.run(_net(), data, ctx)
    inputs = keras.Input((8, 8, 1))
    pooled = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(inputs)))
    with pytest.raises(PruneError, match="Dense and Conv2D"):
        olmp.run(pooled, data, RunContext(strategy, config, str(tmp_path), None))
    assert not os.path.exists(tmp_path / "olmp")
