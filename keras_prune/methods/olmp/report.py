"""What an OLMP run reports: the method details of report.json and its figures."""

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_prune.export.plots import plot_trajectory, save_figure

__all__ = ["describe", "plot_kept_per_layer", "write_plots"]


def describe(loop, output_dir):
    """The `method_details` of a finished `OLMPLoop` (JSON-able).

    Compression ratio = weights and biases of the pruned layers / those that are non-zero
    after masking (what the exported model keeps), as the paper reports it.
    """
    dns, settings = loop.dns, loop.settings
    nonzero = dns.nonzero()
    total, kept = dns.total, int(nonzero.sum())
    thresholds = dns.thresholds(loop.crates)
    layers = [
        {
            "layer": name,
            "type": type(layer).__name__.replace("Masked", ""),
            "params": int(size),
            "kept": int(n),
            "kernel_kept": int(np.count_nonzero(dns.masked_values(layer)[0])),
            "kept_fraction": round(int(n) / int(size), 6),
            "crate": round(float(c), 6),
            "threshold": round(float(t), 6),
            "mu": round(stats.mu, 6),
            "sigma": round(stats.sigma, 6),
        }
        for name, layer, size, n, c, t, stats in zip(
            dns.names, dns.layers, dns.sizes, nonzero, loop.crates, thresholds, dns.statistics
        )
    ]
    workdir = os.path.relpath(loop.workdir, output_dir)
    return {
        "compression_ratio": round(total / kept, 4) if kept else None,
        "kept_fraction": round(kept / total, 6),
        "pruned_layer_params": total,
        "nonzero_params": kept,
        "layers": layers,
        "ncs_calls": len(loop.calls),
        "ncs_evaluations": sum(call["evaluations"] for call in loop.calls),
        "ncs_seconds": round(loop.search_seconds, 3),
        "training_seconds": round(loop.train_seconds, 3),
        "ncs": loop.calls,
        "ncs_trajectory": ncs_trajectory(loop.calls),
        "progress": loop.progress,
        "settings": settings.as_dict(),
        "checkpoint": os.path.join(workdir, "checkpoint.npz"),
        "search_dir": os.path.relpath(loop.tuner_dir, output_dir),
    }


def ncs_trajectory(calls):
    """Best-so-far fitness per generation, the calls one after the other."""
    return [value for call in calls for value in call["trajectory"]]


def write_plots(details, plots_dir, *, title):
    """Writes `olmp_ncs_trajectory.png` (if NCS ran) and `olmp_kept_per_layer.png` into `plots_dir`."""
    trajectory = details["ncs_trajectory"]
    if trajectory:
        plot_trajectory(
            None,
            trajectory,
            os.path.join(plots_dir, "olmp_ncs_trajectory.png"),
            xlabel="NCS generation (all calls in order; each call restarts at its start point)",
            ylabel="fraction of weights kept (1.1: infeasible)",
            title=f"OLMP: NCS best fitness per generation over {details['ncs_calls']} call(s), {title}",
            mode="min",
        )
    plot_kept_per_layer(details["layers"], os.path.join(plots_dir, "olmp_kept_per_layer.png"), title=title)


def plot_kept_per_layer(layers, path, *, title, dpi=100):
    """One horizontal bar per pruned layer: the percentage of its weights and biases kept.

    Args:
        layers: the `layers` records of `describe` (layer, params, kept, kept_fraction).
        path: the PNG/SVG/PDF file to write (atomically).
        title: names the run in the figure title.
        dpi: resolution of raster output.
    """
    names = [row["layer"] for row in layers]
    percent = np.array([100.0 * row["kept_fraction"] for row in layers])
    fig = Figure(figsize=(8.5, 1.8 + 0.35 * len(layers)), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rows = np.arange(len(layers))
    ax.barh(rows, percent, height=0.6, color="#1f5fa8")
    ax.set_yticks(rows, names)
    ax.set_ylim(len(layers) - 0.5, -0.5)
    ax.set_xlim(0, max(float(percent.max(initial=0.0)) * 1.3, 1.0))
    ax.set_xlabel("weights + biases kept (%)")
    ax.set_ylabel("layer (network order)")
    ax.grid(axis="x", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for row, record in zip(rows, layers):
        ax.text(percent[row], row, f"  {percent[row]:.2f}% ({record['kept']:,}/{record['params']:,})",
                va="center", fontsize=8)
    kept, total = sum(r["kept"] for r in layers), sum(r["params"] for r in layers)
    ratio = f"{total / kept:.1f}x" if kept else "all pruned"
    fig.suptitle(f"OLMP: weights + biases kept per layer, {title}\ncompression {ratio} ({kept:,}/{total:,})",
                 fontsize=10)
    save_figure(fig, path)
