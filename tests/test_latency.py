"""Latency measurement: in-process and of exported SavedModels, and the dense/pruned report."""

import time

import keras
import numpy as np
import pytest

from keras_prune.export import measure_latency, measure_saved_model_latency, serving_latency_report


def _model(width=8):
    x = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(width, 3, name="conv")(x)
    return keras.Model(x, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h)))


def test_measure_latency_reports_the_calls_it_timed():
    timing = measure_latency(_model(), batch_size=4, repeats=7, warmup=1)
    assert timing["batch_size"] == 4 and timing["repeats"] == 7
    assert 0 < timing["median_ms"] <= timing["p90_ms"]


def test_p90_is_the_nearest_rank():
    from keras_prune.export.latency import _summary

    assert _summary([float(t) for t in range(1, 31)], 1)["p90_ms"] == 27.0  # the 27th of 30
    assert _summary([float(t) for t in range(1, 11)], 1)["p90_ms"] == 9.0, "not the maximum of ten"
    assert _summary([5.0], 1)["p90_ms"] == 5.0


def test_max_seconds_stops_a_long_measurement_after_at_least_five_calls():
    def slow(x):
        time.sleep(0.02)
        return x

    started = time.perf_counter()
    timing = measure_latency(_model(), repeats=1000, warmup=0, fn=slow, max_seconds=0.05)
    assert timing["repeats"] == 5, "five calls are always timed, then the deadline stops it"
    assert time.perf_counter() - started < 1.0
    assert timing["median_ms"] >= 20


def test_saved_model_latency_is_measured_at_each_batch_size(tmp_path):
    model = _model()
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    timings = measure_saved_model_latency(str(tmp_path / "sm"), (8, 8, 3), batch_sizes=(1, 32), repeats=5, warmup=1)
    assert sorted(timings) == [1, 32]
    assert [timings[b]["batch_size"] for b in (1, 32)] == [1, 32]
    assert all(t["median_ms"] > 0 and t["repeats"] == 5 for t in timings.values())


def test_serving_latency_report_relates_the_time_ratio_to_the_flops_ratio():
    dense = {1: {"median_ms": 2.0, "repeats": 9}, 32: {"median_ms": 40.0, "repeats": 5}}
    pruned = {1: {"median_ms": 1.5, "repeats": 9}, 32: {"median_ms": 20.0, "repeats": 6}}
    report = serving_latency_report(dense, pruned, flops_ratio=0.5)
    assert report["batch_1"] == {"dense_ms": 2.0, "pruned_ms": 1.5, "ratio": 0.75, "ratio_over_flops_ratio": 1.5,
                                 "repeats": 9}
    assert report["batch_32"]["ratio"] == pytest.approx(0.5)
    assert report["batch_32"]["ratio_over_flops_ratio"] == pytest.approx(1.0)
    assert report["batch_32"]["repeats"] == 5


def test_a_pair_of_saved_models_is_timed_in_alternating_blocks(tmp_path, monkeypatch):
    from keras_prune.export import latency

    paths = []
    for width in (8, 4):
        path = str(tmp_path / f"w{width}")
        _model(width).export(path, format="tf_saved_model", verbose=False)
        paths.append(path)
    order = []
    real_block = latency._time_block

    def recorded(call, x, calls):
        order.append((id(call), calls))
        return real_block(call, x, calls)

    monkeypatch.setattr(latency, "_time_block", recorded)
    dense, pruned = latency.measure_saved_model_pair_latency(paths, (8, 8, 3), batch_sizes=(1, 4), repeats=12,
                                                             warmup=1, block=5)
    assert [dense[b]["repeats"] for b in (1, 4)] == [12, 12] and [pruned[b]["repeats"] for b in (1, 4)] == [12, 12]
    assert all(t["median_ms"] > 0 for t in (*dense.values(), *pruned.values()))
    per_batch = order[:6]
    assert [calls for _, calls in per_batch] == [5, 5, 5, 5, 2, 2], "blocks of 5, the last one short"
    assert len({who for who, _ in per_batch[0::2]}) == 1 and len({who for who, _ in per_batch[1::2]}) == 1
    assert per_batch[0][0] != per_batch[1][0], "the two models take turns"


def test_a_pair_measurement_stops_at_max_seconds_for_each_model(tmp_path):
    from keras_prune.export import latency

    path = str(tmp_path / "sm")
    _model().export(path, format="tf_saved_model", verbose=False)
    first, second = latency.measure_saved_model_pair_latency([path, path], (8, 8, 3), batch_sizes=(1,),
                                                             repeats=10**6, warmup=0, block=5, max_seconds=0.05)
    assert 5 <= first[1]["repeats"] < 10**6 and 5 <= second[1]["repeats"] < 10**6


def _fake_serves(monkeypatch, seconds):
    """SavedModel paths "0", "1", ... load as serves that take `seconds[i]` and record what they are fed."""
    from keras_prune.export import latency

    fed = {i: [] for i in range(len(seconds))}

    def load(path):
        def serve(x):
            fed[int(path)].append(float(np.asarray(x)[0, 0, 0, 0]))
            time.sleep(seconds[int(path)])
            return x

        return None, serve

    monkeypatch.setattr(latency, "_load_serve", load)
    return fed


def test_real_images_are_fed_to_both_models_batch_by_batch(monkeypatch):
    from keras_prune.export import latency

    fed = _fake_serves(monkeypatch, [0.0, 0.0])
    images = np.arange(6, dtype="float32").reshape(6, 1, 1, 1)
    latency.measure_saved_model_pair_latency(["0", "1"], (1, 1, 1), batch_sizes=(2,), repeats=9, warmup=1, block=3,
                                             images=images)
    assert set(fed[0]) == set(fed[1]) == {0.0, 2.0, 4.0}, "the batches [0, 1], [2, 3], [4, 5] in turn"


def test_both_models_stop_when_either_runs_out_of_time(monkeypatch):
    from keras_prune.export import latency

    _fake_serves(monkeypatch, [0.004, 0.001])  # the first is four times slower
    slow, fast = latency.measure_saved_model_pair_latency(["0", "1"], (1, 1, 1), batch_sizes=(1,), repeats=10**6,
                                                          warmup=0, block=5, max_seconds=0.1)
    assert fast[1]["repeats"] == slow[1]["repeats"] < 10**6, "paired to the end, not the fast one timed alone"
