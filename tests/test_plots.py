"""Plots: valid PNGs of a sane size, many layers, missing values, no global pyplot state."""

import struct
import sys

import numpy as np
import pytest

from keras_prune.export.plots import plot_layer_channels, plot_trajectory

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    """(width, height) from the PNG header; fails unless the file is a PNG."""
    data = path.read_bytes()
    assert data[:8] == _PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    assert data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
    return struct.unpack(">II", data[16:24])


def _report(n_layers):
    rng = np.random.default_rng(0)
    layers = []
    for i in range(n_layers):
        before = int(rng.choice([16, 64, 256, 1024]))
        after = int(rng.integers(1, before + 1))
        layers.append({"name": f"block{i}_conv", "channels_before": before,
                       "channels_after": after, "flops_before": 1000 * before,
                       "flops_after": 1000 * after, "sparsity": 1 - after / before})
    return {"method": "l1", "model": "resnet50", "dataset": "imagenet",
            "baseline": {"flops": 4.1e9}, "pruned": {"flops": 2.0e9}, "layers": layers}


def test_layer_channels_png_is_valid_and_sized(tmp_path):
    path = tmp_path / "channels.png"
    plot_layer_channels(_report(5), path)
    width, height = _png_size(path)
    assert 600 <= width <= 2000
    assert 200 <= height <= 1000
    assert [p.name for p in tmp_path.iterdir()] == ["channels.png"]  # no temp file left


def test_layer_channels_figure_grows_with_150_layers(tmp_path):
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    plot_layer_channels(_report(10), small)
    plot_layer_channels(_report(150), large)
    small_size, large_size = _png_size(small), _png_size(large)
    assert large_size[1] > 2 * small_size[1]  # rows keep their height, labels stay apart
    assert large_size[1] <= 5000
    assert abs(large_size[0] - small_size[0]) < 100  # width follows the names, not the count


def test_layer_channels_handles_missing_values(tmp_path):
    report = _report(3)
    report["pruned"]["flops"] = None
    report["layers"][1]["channels_after"] = None
    plot_layer_channels(report, tmp_path / "channels.png")
    assert _png_size(tmp_path / "channels.png")[0] > 0


def test_layer_channels_rejects_empty_layers(tmp_path):
    with pytest.raises(ValueError, match="layers"):
        plot_layer_channels({"layers": []}, tmp_path / "channels.png")


def test_layer_channels_svg_by_extension(tmp_path):
    plot_layer_channels(_report(3), tmp_path / "channels.svg")
    assert "<svg" in (tmp_path / "channels.svg").read_text()[:1000]


def test_unknown_extension_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="path"):
        plot_trajectory([0, 1], [1, 2], tmp_path / "t.jpg", xlabel="x", ylabel="y", title="t")


@pytest.mark.parametrize("mode", ["max", "min"])
def test_trajectory_png_with_running_best_and_gaps(tmp_path, mode):
    ys = [0.5, 0.7, None, 0.6, float("nan"), 0.9]
    path = tmp_path / "trajectory.png"
    plot_trajectory(range(1, 7), ys, path, xlabel="generation", ylabel="fitness",
                    title="NCS", mode=mode)
    width, height = _png_size(path)
    assert 600 <= width <= 1200 and 300 <= height <= 800


def test_trajectory_default_xs_and_no_best_line(tmp_path):
    plot_trajectory(None, np.linspace(0, 1, 500), tmp_path / "t.png", xlabel="episode",
                    ylabel="reward", title="rewards", best_so_far=False)
    assert _png_size(tmp_path / "t.png")[0] > 0


def test_trajectory_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="same length"):
        plot_trajectory([0, 1, 2], [1, 2], tmp_path / "t.png", xlabel="x", ylabel="y", title="t")
    with pytest.raises(ValueError, match="mode"):
        plot_trajectory(None, [1, 2], tmp_path / "t.png", xlabel="x", ylabel="y", title="t",
                        mode="best")
    with pytest.raises(ValueError, match="at least one"):
        plot_trajectory(None, [], tmp_path / "t.png", xlabel="x", ylabel="y", title="t")


def test_plotting_leaves_pyplot_and_backend_alone(tmp_path):
    import matplotlib

    backend = matplotlib.get_backend() if "matplotlib.pyplot" in sys.modules else None
    plot_trajectory(None, [1, 2, 3], tmp_path / "t.png", xlabel="x", ylabel="y", title="t")
    if backend is None:
        assert "matplotlib.pyplot" not in sys.modules
    else:
        import matplotlib.pyplot as plt

        assert matplotlib.get_backend() == backend
        assert plt.get_fignums() == []


def test_a_layer_that_ends_wider_than_it_began_stays_inside_the_axes(tmp_path, monkeypatch):
    import keras_prune.export.plots as plots

    drawn = {}

    def capture(fig, path):
        ax = fig.axes[0]
        drawn["right"] = ax.get_xlim()[1]
        drawn["labels"] = {t.get_text(): t.get_position()[0] for t in ax.texts}
        fig.clear()

    monkeypatch.setattr(plots, "save_figure", capture)
    report = {"method": "scratch", "model": "resnet20", "layers": [
        {"name": "stream", "channels_before": 64, "channels_after": 80},
        {"name": "inner", "channels_before": 64, "channels_after": 20}]}
    plot_layer_channels(report, tmp_path / "channels.png")
    assert drawn["right"] > 80
    assert drawn["labels"]["80/64 (125 %)"] > 80 and 64 < drawn["labels"]["20/64 (31 %)"] < 80
