"""report.md: the summary, layer, method and config tables, with missing values as "—"."""

import numpy as np
import pytest

from keras_prune.export.report_md import (
    format_count,
    format_percent,
    format_seconds,
    render_markdown,
    write_markdown,
)


def _report(**overrides):
    report = {
        "method": "l1",
        "model": "lenet5",
        "dataset": "mnist5k",
        "config": {"method": "l1", "epochs": 3, "lr": 0.001, "data": {"batch_size": 128}},
        "baseline": {"accuracy": 0.98, "flops": 2293000, "params": 431080,
                     "nonzero_params": 431080, "latency_ms": 0.41},
        "pruned": {"accuracy": 0.97, "flops": 1150000, "params": 200000,
                   "nonzero_params": 100000, "latency_ms": 0.30},
        "search_seconds": 12.3,
        "retrain_seconds": 45.0,
        "total_seconds": 80.1,
        "layers": [
            {"name": "conv1", "channels_before": 20, "channels_after": 10,
             "flops_before": 288000, "flops_after": 144000, "sparsity": 0.5},
            {"name": "conv2", "channels_before": 50, "channels_after": 25,
             "flops_before": 1600000, "flops_after": 400000, "sparsity": 0.5},
        ],
        "method_details": {
            "generations": 10,
            "sigma": np.float32(0.25),
            "policy": [0.5, 0.25],
            "gate_values": list(range(1000)),
            "history": [{"generation": g, "best_fitness": 0.5 + g / 10} for g in range(3)],
        },
        "versions": {"tensorflow": "2.21.0"},
    }
    report.update(overrides)
    return report


@pytest.mark.parametrize(
    "value, expected",
    [(1.62e9, "1.62 G"), (313.2e6, "313.2 M"), (25.6e6, "25.6 M"), (431080, "431.1 K"),
     (431, "431"), (None, "—")],
)
def test_format_count_uses_si_prefixes(value, expected):
    assert format_count(value) == expected


def test_format_helpers_units_and_missing():
    assert format_count(25.6e6, "params") == "25.6 M params"
    assert format_percent(0.9812) == "98.1 %"
    assert format_percent(None) == "—"
    assert format_seconds(12.34) == "12.3 s"
    assert format_seconds(80.1) == "1 min 20 s"
    assert format_seconds(7380) == "2 h 03 min"


def test_markdown_title_and_summary_rows_with_ratios():
    text = render_markdown(_report())
    assert text.startswith("# Pruning report: l1 on lenet5 / mnist5k\n")
    assert "| Accuracy | 98.00 % | 97.00 % | 0.990× |" in text
    assert "| FLOPs (MACs) | 2.29 M | 1.15 M | 0.502× |" in text
    assert "| Params | 431.1 K | 200.0 K | 0.464× |" in text
    assert "| Non-zero params | 431.1 K | 100.0 K | 0.232× |" in text
    assert "| Compression (params / non-zero) | 1.000× | 2.000× | 2.000× |" in text
    assert "| Compression vs dense (dense params / non-zero) | 1.000× | 4.311× |  |" in text
    assert "| Latency, batch 1 (ms) | 0.41 | 0.30 | 0.732× |" in text
    assert "Search: 12.3 s; retraining: 45.0 s; total: 1 min 20 s." in text


def test_markdown_serving_latency_rows_in_batch_order():
    serving = {"batch_32": {"dense_ms": 12.0, "pruned_ms": 6.0}, "batch_1": {"dense_ms": 0.8, "pruned_ms": 0.6}}
    text = render_markdown(_report(serving_latency=serving))
    one, thirty_two = "| SavedModel latency, batch 1 (ms) | 0.80 | 0.60 | 0.750× |", "| SavedModel latency, batch 32 (ms) | 12.00 | 6.00 | 0.500× |"
    assert one in text and thirty_two in text and text.index(one) < text.index(thirty_two)
    assert "SavedModel latency" not in render_markdown(_report(serving_latency=None))


def test_markdown_layer_table_rows_and_total():
    text = render_markdown(_report())
    assert "| `conv1` | 20 → 10 | 50.0 % | 288.0 K → 144.0 K | 50.0 % |" in text
    assert "| `conv2` | 50 → 25 | 50.0 % | 1.60 M → 400.0 K | 50.0 % |" in text
    assert "| **All 2 layers** | 70 → 35 | 50.0 % | 1.89 M → 544.0 K |  |" in text


def test_markdown_mean_channel_counts_read_to_two_decimals():
    # rnp's channels are means over the test inputs: their sum is float noise (163.83999999999997).
    layers = [{"name": n, "channels_before": 10, "channels_after": a, "flops_before": 1000, "flops_after": 500}
              for n, a in (("a", 11.11), ("b", 152.73))]
    text = render_markdown(_report(layers=layers))
    assert "| `a` | 10 → 11.11 |" in text and "| **All 2 layers** | 20 → 163.84 |" in text


def test_markdown_method_details_scalars_records_and_skipped_arrays():
    text = render_markdown(_report())
    assert "## Method details" in text
    assert "| `generations` | 10 |" in text
    assert "| `sigma` | 0.25 |" in text
    assert "| `policy` | [0.5, 0.25] |" in text
    assert "| `gate_values` | (1000 values, in report.json) |" in text
    assert "999" not in text  # the large array itself is left out
    assert "| generation | best_fitness |" in text
    assert "| 2 | 0.7 |" in text


def test_markdown_config_is_flattened_and_cells_are_escaped():
    text = render_markdown(_report(config={"data": {"batch_size": 128}, "note": "a|b\nc"}))
    config = text.split("## Config")[1]
    assert "| `data.batch_size` | 128 |" in config
    assert "| `note` | a\\|b c |" in config


def test_markdown_lists_the_model_inputs():
    text = render_markdown(_report(data={"input_shape": [28, 28, 1], "mean": [0.13], "std": [0.31]}))
    inputs = text.split("## Model inputs")[1].split("##")[0]
    assert "| `input_shape` | [28, 28, 1] |" in inputs and "| `mean` | [0.13] |" in inputs


def test_markdown_early_stop_renders_dashes():
    report = _report()
    report["pruned"].update(accuracy=None, latency_ms=None)
    report.update(search_seconds=None, method_details={}, layers=[])
    text = render_markdown(report)
    assert "| Accuracy | 98.00 % | — | — |" in text
    assert "| Latency, batch 1 (ms) | 0.41 | — | — |" in text
    assert "Search: —;" in text
    assert "No prunable layers were recorded." in text
    assert "## Method details" not in text
    assert "None" not in text


def test_markdown_of_empty_report_still_renders():
    text = render_markdown({})
    assert text.startswith("# Pruning report: — on — / —")
    assert "None" not in text


def test_render_markdown_rejects_non_dict():
    with pytest.raises(TypeError, match="report"):
        render_markdown([1, 2])


def test_write_markdown_writes_atomically(tmp_path):
    path = tmp_path / "run" / "report.md"
    write_markdown(_report(), path)
    assert path.read_text() == render_markdown(_report())
    assert [p.name for p in path.parent.iterdir()] == ["report.md"]  # no temp file left
