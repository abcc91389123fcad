"""Repeated final trainings, so that a benchmark compares methods and not one training's luck.

One final training on this CPU varies by about a point of test accuracy run to run, as much
as the differences the benchmarks measure. A benchmark therefore runs each method with its own
final training off and trains the method's result `repeats` times here, repeat k of every arm
with the seed `repeat_seed(seed, k)`; its accuracy is the mean.
"""

import keras

from keras_prune.graph import reinitialize
from keras_prune.methods.base import retrain
from keras_prune.training import evaluate_accuracy

__all__ = ["copy_model", "final_trainings", "repeat_seed"]


def repeat_seed(seed, repeat):
    """The seed of final training `repeat` (0, 1, ...) in a run with `seed`: the run's own seed first."""
    return seed + 1000 * repeat


def copy_model(model, strategy, *, fresh=False, seed=None):
    """A twin of `model` under `strategy`: its weights, or with `fresh` new draws from its initialisers
    (reseeded from `seed` when given: the zoo's initializers carry seeds of their own, and would
    otherwise draw the weights the model was built with every time)."""
    with strategy.scope():
        if fresh:
            return reinitialize(model, name=model.name, seed=seed)
        twin = keras.models.clone_model(model)
        twin.set_weights(model.get_weights())
    return twin


def final_trainings(start, data, ctx, *, epochs, repeats, seed, arm, log, fresh=False, prepare=None):
    """Trains twins of `start` for `epochs`, `repeats` times, repeat k with seed `repeat_seed(seed, k)`.

    Args:
        start: the model every repeat starts from (its weights; with `fresh`, its architecture only,
            each repeat drawing new weights from initializers reseeded with its seed: training from
            scratch).
        data: the run's data; `prepare(data, seed)`, if given, turns it into each repeat's training data.
        ctx: the `RunContext` whose settings (`learning_rate`, `schedule`, ...) the trainings use.
        arm: the name in the log lines and the training phase.

    Returns:
        `(model, accuracies, seconds)`: the first trained model (for latency and params, the same in
        every repeat), the test accuracy and the training seconds of each repeat.
    """
    first, accuracies, seconds = None, [], []
    for repeat in range(repeats):
        repeat_seed_value = repeat_seed(seed, repeat)
        keras.utils.set_random_seed(repeat_seed_value)
        model = copy_model(start, ctx.strategy, fresh=fresh, seed=repeat_seed_value)
        train = prepare(data, repeat_seed_value) if prepare else data
        seconds.append(retrain(model, train, ctx, epochs=epochs, phase=f"{arm}_final"))
        accuracies.append(evaluate_accuracy(model, data.test, ctx.strategy))
        log(f"{arm}: final training {repeat + 1}/{repeats} (seed {repeat_seed_value}): test accuracy "
            f"{accuracies[-1]:.4f} after {epochs} epoch(s), {seconds[-1]:.0f} s")
        first = model if first is None else first
    return first, accuracies, seconds
