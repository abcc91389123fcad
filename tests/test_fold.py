"""fold_batch_norms: BN disappears into the layer before it, outputs unchanged."""

import keras
import numpy as np
from keras import layers

from keras_prune.export import fold_batch_norms
from keras_prune.layers import GatedBatchNormalization


def test_fold_batch_norms_is_exact_and_removes_bn(rng):
    x = keras.Input((8, 8, 3))
    h = layers.Conv2D(4, 3, use_bias=False, name="conv")(x)
    h = layers.BatchNormalization(name="bn1")(h)
    h = layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(layers.ReLU()(h))
    h = layers.BatchNormalization(name="bn2")(h)
    shared = layers.Conv2D(3, 1, name="shared")(h)
    a = layers.BatchNormalization(name="bn_kept")(shared)
    out = layers.Dense(2, name="fc")(layers.Flatten()(layers.Add()([a, shared])))
    model = keras.Model(x, out)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
    folded = fold_batch_norms(model)
    names = {l.name for l in folded.layers}
    assert "bn1" not in names and "bn2" not in names
    assert "bn_kept" in names, "a BN whose input is used elsewhere must stay"
    xs = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(folded(xs), model(xs), atol=1e-4, rtol=1e-4)


def test_a_batch_norm_whose_input_is_also_a_model_output_stays(rng):
    x = keras.Input((8, 8, 3))
    conv = layers.Conv2D(4, 3, name="conv")(x)
    normed = layers.BatchNormalization(name="bn")(conv)
    model = keras.Model(x, [conv, normed])
    bn = model.get_layer("bn")
    bn.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in bn.get_weights()])
    folded = fold_batch_norms(model)
    assert "bn" in {l.name for l in folded.layers}, "folding would change the conv output the model returns"
    xs = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    for got, expected in zip(folded(xs), model(xs)):
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_model_with_nothing_to_fold_is_returned_as_it_is():
    x = keras.Input((8, 8, 3))
    h = layers.LayerNormalization(name="ln")(layers.Conv2D(4, 3, name="conv")(x))
    model = keras.Model(x, layers.Dense(2, name="fc")(layers.Flatten()(h)))
    assert fold_batch_norms(model) is model


def test_a_gated_batch_norm_folds_with_its_gate(rng):
    x = keras.Input((8, 8, 3))
    gated_bn = GatedBatchNormalization(name="gbn")
    h = gated_bn(layers.Conv2D(4, 3, name="conv")(x))
    model = keras.Model(x, layers.Dense(2, name="fc")(layers.Flatten()(layers.ReLU()(h))))
    for w in gated_bn.weights:
        w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    gated_bn.gate.assign(np.array([0.0, 0.25, 1.0, 0.5], "float32"))
    folded = fold_batch_norms(model)
    assert "gbn" not in {l.name for l in folded.layers}
    xs = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(folded(xs), model(xs), atol=1e-4, rtol=1e-4)
