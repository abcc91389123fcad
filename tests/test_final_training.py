"""benchmarks/final_training.py: repeated final trainings start where they should, with their own seeds."""

import keras
import numpy as np
import tensorflow as tf

from conftest import load_benchmark, tiny_resnet

from keras_prune.data import load_dataset
from keras_prune.methods.base import RunContext
from keras_prune.models import get_model
from keras_prune.pipeline import RunConfig

final_training = load_benchmark("final_training")


def _weights_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_the_first_repeat_runs_with_the_runs_own_seed_and_the_others_apart():
    assert final_training.repeat_seed(3, 0) == 3
    assert len({final_training.repeat_seed(3, k) for k in range(5)}) == 5


def test_a_copy_keeps_the_weights_and_a_fresh_copy_draws_new_ones():
    strategy = tf.distribute.get_strategy()
    model = tiny_resnet()
    twin = final_training.copy_model(model, strategy)
    assert _weights_equal(model, twin)
    twin.layers[1].kernel.assign(twin.layers[1].kernel + 1.0)
    assert not _weights_equal(model, twin), "the copy has variables of its own"
    fresh = final_training.copy_model(model, strategy, fresh=True)
    assert [w.shape for w in fresh.get_weights()] == [w.shape for w in model.get_weights()]
    assert not np.array_equal(fresh.get_layer("stem").kernel.numpy(), model.get_layer("stem").kernel.numpy())


def _trainings(tmp_path, start, **kwargs):
    strategy = tf.distribute.get_strategy()
    data = load_dataset("digits", batch_size=64, seed=0).limited(2, 64)
    config = RunConfig(method="bench", model="tiny", output_dir=str(tmp_path), learning_rate=0.05, verbose=0)
    lines = []
    result = final_training.final_trainings(start, data, RunContext(strategy, config, str(tmp_path), None),
                                            epochs=1, repeats=2, seed=5, arm="arm", log=lines.append, **kwargs)
    return result, lines


def test_every_repeat_trains_a_copy_of_the_start_and_leaves_the_start_alone(tmp_path, monkeypatch):
    start = tiny_resnet()
    before = [w.copy() for w in start.get_weights()]
    seen, starts = [], []
    real_retrain = final_training.retrain

    def recording_retrain(model, data, ctx, *, epochs, phase):
        starts.append(model.get_weights())
        return real_retrain(model, data, ctx, epochs=epochs, phase=phase)

    def prepare(data, seed):
        seen.append(seed)
        return data

    monkeypatch.setattr(final_training, "retrain", recording_retrain)
    (model, accuracies, seconds), lines = _trainings(tmp_path, start, prepare=prepare)
    assert all(np.array_equal(a, b) for a, b in zip(before, start.get_weights())), "the start is never trained"
    assert len(starts) == 2 and all(
        all(np.array_equal(a, b) for a, b in zip(before, weights)) for weights in starts
    ), "without fresh, every repeat starts from the start's weights"
    assert model is not start and not _weights_equal(model, start), "the first repeat's model is trained"
    assert seen == [5, 1005], "each repeat prepares its data with its own seed"
    assert len(accuracies) == len(seconds) == 2 and all(0.0 <= a <= 1.0 for a in accuracies)
    assert [line.split(":")[0] for line in lines] == ["arm", "arm"] and "(seed 1005)" in lines[1]


def test_fresh_repeats_start_from_new_draws_that_depend_on_the_seed(tmp_path, monkeypatch):
    # A zoo model built with a seed: its initializers carry seeds of their own, so a plain rebuild
    # would draw the weights it was built with in every repeat.
    start = get_model("resnet20", (8, 8, 1), 10, width=0.25, seed=0)
    initial = []
    real_retrain = final_training.retrain

    def recording_retrain(model, data, ctx, *, epochs, phase):
        initial.append(model.get_layer("conv1_conv").kernel.numpy().copy())
        return real_retrain(model, data, ctx, epochs=epochs, phase=phase)

    monkeypatch.setattr(final_training, "retrain", recording_retrain)
    _trainings(tmp_path, start, fresh=True)
    first_run = list(initial)
    initial.clear()
    keras.utils.set_random_seed(123)  # the trainings seed themselves: what came before does not matter
    _trainings(tmp_path, start, fresh=True)
    stem = start.get_layer("conv1_conv").kernel.numpy()
    assert not np.array_equal(first_run[0], stem) and not np.array_equal(first_run[0], first_run[1])
    assert all(np.array_equal(a, b) for a, b in zip(first_run, initial)), "same seeds, same draws"
