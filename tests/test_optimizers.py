"""Weight decay as an L2 term of the gradient (PyTorch's and Caffe's), not Keras's decoupled decay."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_prune.training import compile_classifier
from keras_prune.training.optimizers import L2Adam, L2SGD, make_optimizer


def _steps(optimizer, steps=2, start=1.0):
    """Applies `steps` zero gradients to one weight: only the decay moves it."""
    w = keras.Variable(np.array([start], "float32"))
    optimizer.build([w])
    for _ in range(steps):
        optimizer.apply_gradients([(tf.zeros_like(w.value), w)])
    return float(w.numpy()[0])


def test_l2_decay_passes_through_momentum_as_in_pytorch():
    # PyTorch SGD(lr=0.1, momentum=0.9, weight_decay=0.1) from w=1 with zero loss gradient:
    # buf = 0.1 -> w = 0.99; buf = 0.9 * 0.1 + 0.1 * 0.99 = 0.189 -> w = 0.99 - 0.0189 = 0.9711.
    assert _steps(L2SGD(0.1, momentum=0.9, l2=0.1)) == pytest.approx(0.9711, abs=1e-6)
    # Keras's decoupled decay shrinks by lr * wd per step, outside momentum: 0.99, then 0.9801.
    assert _steps(keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.1)) == pytest.approx(0.9801, abs=1e-6)


def test_l2_adam_adds_the_term_to_the_gradient():
    # Adam normalises the gradient: a pure decay term of any size moves w by about lr per step.
    assert _steps(L2Adam(0.01, l2=1e-3), steps=1) == pytest.approx(1.0 - 0.01, abs=1e-4)
    assert _steps(keras.optimizers.Adam(0.01), steps=1) == pytest.approx(1.0, abs=1e-7)


def test_optimizers_round_trip_and_compile_picks_them():
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(L2SGD(0.05, momentum=0.9, l2=1e-4)))
    assert isinstance(restored, L2SGD) and restored.l2 == 1e-4 and restored.get_config()["momentum"] == 0.9
    assert type(make_optimizer("sgd", 0.1)) is keras.optimizers.SGD
    assert type(make_optimizer("adam", 0.1, weight_decay=1e-4)) is L2Adam
    with pytest.raises(ValueError, match="'sgd' or 'adam'"):
        make_optimizer("rmsprop", 0.1)
    with pytest.raises(ValueError, match="l2 >= 0"):
        L2SGD(0.1, l2=-1.0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    compile_classifier(model, tf.distribute.get_strategy(), learning_rate=0.1, weight_decay=1e-4)
    assert isinstance(model.optimizer, L2SGD) and model.optimizer.l2 == 1e-4


def test_two_replicas_decay_as_one_device(mirrored):
    def trained(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            inputs = keras.Input((3,))
            model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
        compile_classifier(model, strategy, learning_rate=0.1, weight_decay=0.05)
        x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
        model.fit(x, np.arange(8) % 2, batch_size=8, epochs=3, verbose=0, shuffle=False)
        return [w.numpy() for w in model.weights]

    for one, two in zip(trained(tf.distribute.get_strategy()), trained(mirrored)):
        np.testing.assert_allclose(one, two, atol=1e-6)
