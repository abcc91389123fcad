"""The keras.applications sweep (benchmarks/applications_sweep.py): its per-model check passes
on a real application and names the stage and the reason when a model fails."""

import importlib.util
import os
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
_spec = importlib.util.spec_from_file_location("applications_sweep", os.path.join(ROOT, "benchmarks", "applications_sweep.py"))
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)


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
