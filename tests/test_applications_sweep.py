"""The keras.applications sweep (benchmarks/applications_sweep.py): its per-model check passes
on a real application and names the stage and the reason when a model fails."""

import keras
import numpy as np
import pytest

from conftest import load_benchmark

sweep = load_benchmark("applications_sweep")


def test_every_application_is_swept():
    names = sweep.application_names()
    assert {"ResNet50", "MobileNetV3Small", "ConvNeXtTiny", "EfficientNetV2B0", "NASNetMobile"} <= set(names)
    assert all(callable(getattr(keras.applications, n)) for n in names)


@pytest.mark.slow
def test_a_real_application_passes_every_stage(tmp_path):
    record = sweep.check("MobileNetV3Small", str(tmp_path), log=lambda m: None)
    assert record["passed"], record.get("reason")
    assert list(record["stages"]) == list(sweep.STAGES) and set(record["stages"].values()) == {"ok"}
    assert record["flops"]["pruned"] < record["flops"]["dense"]
    assert record["params"]["ratio"] < 1
    assert record["equality_max_relative_error"] <= 1e-6
    assert record["equality_max_relative_error"] <= 1e-12, "float64 throughout: only float64 rounding"
    assert keras.config.floatx() == "float32", "the float64 check restores the default"
    assert keras.config.dtype_policy().name == "float32"


def test_a_failure_names_its_stage_and_reason(tmp_path, monkeypatch):
    # A model whose only layer makes the output: nothing can be pruned.
    monkeypatch.setattr(sweep, "build", lambda name, seed=0: keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    record = sweep.check("Tiny", str(tmp_path), log=lambda m: None)
    assert not record["passed"]
    assert record["failed_stage"] == "analyse" and record["stages"] == {"build": "ok", "analyse": "failed"}
    assert "no prunable channel group" in record["reason"]

def test_batch_norm_statistics_fit_the_activations_and_differ_per_channel():
    x = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3, kernel_initializer=keras.initializers.RandomNormal(stddev=30.0))(x)
    model = keras.Model(x, keras.layers.BatchNormalization(name="bn")(h))
    sweep.calibrate_batch_norm(model)
    gamma, beta, mean, variance = model.get_layer("bn").get_weights()
    assert len(set(gamma.round(6))) == 6 and len(set(beta.round(6))) == 6, "random per channel"
    assert variance.min() > 100, "the statistics of conv outputs of std ~100, not of unit ones"
    normalised = (np.asarray(keras.Model(x, h)(np.random.default_rng(3).normal(size=(64, 8, 8, 3)))) - mean) / np.sqrt(variance)
    assert 0.5 < normalised.std() < 2.0 and abs(normalised.mean()) < 0.5


def test_batch_norm_without_scale_or_center_is_calibrated_too():
    x = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3)(x)
    h = keras.layers.BatchNormalization(scale=False, name="no_scale")(h)  # as Inception builds them
    model = keras.Model(x, keras.layers.BatchNormalization(center=False, name="no_center")(h))
    sweep.calibrate_batch_norm(model)
    assert len(model.get_layer("no_scale").get_weights()) == 3 and len(model.get_layer("no_center").get_weights()) == 3
    assert not np.allclose(model.get_layer("no_scale").moving_variance.numpy(), 1.0)
