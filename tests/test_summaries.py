"""TensorBoard summaries: the event file holds the expected tags, values and plugins."""

import numpy as np
import pytest
import tensorflow as tf

from keras_prune.export.summaries import RunSummaries


def _events(logdir):
    """{tag: [(step, plugin name, value proto)]} from every event file under `logdir`."""
    found = {}
    for path in sorted(logdir.rglob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                found.setdefault(value.tag, []).append(
                    (event.step, value.metadata.plugin_data.plugin_name, value)
                )
    return found


def _scalar(value):
    return float(tf.make_ndarray(value.tensor))


def test_scalars_written_under_their_names_per_step(tmp_path):
    with RunSummaries(tmp_path) as summaries:
        summaries.scalars(0, loss=1.5, accuracy=0.5, flops=2.0e6, params=np.int64(431080))
        summaries.scalars(1, loss=0.5, accuracy=None)
    events = _events(tmp_path)
    assert [(s, _scalar(v)) for s, _, v in events["loss"]] == [(0, 1.5), (1, 0.5)]
    assert [s for s, _, _ in events["accuracy"]] == [0]  # None is skipped
    assert _scalar(events["flops"][0][2]) == 2.0e6
    assert _scalar(events["params"][0][2]) == 431080
    assert {plugin for s, plugin, _ in events["loss"]} == {"scalars"}


def test_layer_sparsity_one_scalar_per_layer(tmp_path):
    with RunSummaries(tmp_path) as summaries:
        summaries.layer_sparsity(3, {"conv1": 0.25, "block2_conv": 0.5})
    events = _events(tmp_path)
    assert _scalar(events["sparsity/conv1"][0][2]) == 0.25
    assert events["sparsity/block2_conv"][0][0] == 3


def test_histograms_under_their_own_tags(tmp_path):
    with RunSummaries(tmp_path) as summaries:
        summaries.histograms(2, {"gates/conv1": np.linspace(0, 1, 20).reshape(4, 5)})
    step, plugin, value = _events(tmp_path)["gates/conv1"][0]
    assert (step, plugin) == (2, "histograms")
    buckets = tf.make_ndarray(value.tensor)  # rows of (left edge, right edge, count)
    assert buckets.shape == (30, 3), "TensorBoard's default bucket count"
    assert buckets[:, 2].sum() == 20 and buckets[0, 0] == 0.0 and buckets[-1, 1] == 1.0


def test_text_keeps_markdown(tmp_path):
    table = "| layer | kept |\n| --- | --- |\n| conv1 | 10 |"
    with RunSummaries(tmp_path) as summaries:
        summaries.text("structure", table)
    step, plugin, value = _events(tmp_path)["structure"][0]
    assert plugin == "text"
    assert tf.make_ndarray(value.tensor).item().decode() == table


def test_hparams_records_config_and_final_metrics(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    config = {"method": "l1", "epochs": 3, "lr": 0.01, "strip": True,
              "layers": ["conv1", "conv2"], "checkpoint": None, "data": {"batch_size": 64}}
    with RunSummaries(tmp_path) as summaries:
        summaries.hparams(config, {"accuracy": 0.97, "flops": 1.2e6, "latency_ms": None})
    events = _events(tmp_path)
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(events)
    assert {p for tag in ("_hparams_/experiment", "_hparams_/session_start_info")
            for _, p, _ in events[tag]} == {"hparams"}

    start = plugin_data_pb2.HParamsPluginData.FromString(
        events["_hparams_/session_start_info"][0][2].metadata.plugin_data.content
    ).session_start_info.hparams
    assert start["method"].string_value == "l1"
    assert start["epochs"].number_value == 3
    assert start["strip"].bool_value is True
    assert start["layers"].string_value == "['conv1', 'conv2']"
    assert start["checkpoint"].string_value == "None"
    assert start["data.batch_size"].number_value == 64

    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        events["_hparams_/experiment"][0][2].metadata.plugin_data.content
    ).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["final/accuracy", "final/flops"]
    assert _scalar(events["final/accuracy"][0][2]) == pytest.approx(0.97)
    assert "final/latency_ms" not in events


def test_close_is_idempotent_and_blocks_further_writes(tmp_path):
    summaries = RunSummaries(tmp_path)
    summaries.close()
    summaries.close()
    with pytest.raises(RuntimeError, match="closed"):
        summaries.scalars(0, loss=1.0)


def test_bad_input_is_rejected_with_names(tmp_path):
    with RunSummaries(tmp_path) as summaries:
        with pytest.raises(TypeError, match="step"):
            summaries.scalars(0.5, loss=1.0)
        with pytest.raises(TypeError, match="loss"):
            summaries.scalars(0, loss="high")
        with pytest.raises(TypeError, match="sparsities"):
            summaries.layer_sparsity(0, [0.5])
        with pytest.raises(TypeError, match="markdown"):
            summaries.text("structure", 3)
