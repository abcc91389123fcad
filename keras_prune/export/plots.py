"""Figures of a run: channels kept per layer, and search trajectories.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas directly, never through
`pyplot`: nothing global (backend, open-figure registry, rcParams) changes for the caller,
and nothing needs a display. Files are written atomically, like every other artefact.
"""

import io
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_prune.export.report_io import atomic_write
from keras_prune.export.report_md import MISSING, format_count, format_percent

__all__ = ["plot_layer_channels", "plot_trajectory", "save_figure"]

_BEFORE_COLOR = "#c9d3df"
_AFTER_COLOR = "#1f5fa8"
_BEST_COLOR = "#d1495b"
# Inches per layer row: keeps 7-point labels apart however many layers there are.
_ROW_INCHES = 0.2
_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def plot_layer_channels(report, path, *, dpi=100):
    """Draws channels before vs after pruning for every prunable layer, one bar per row.

    Bars are horizontal so layer names stay readable with hundreds of layers; the figure
    grows with the layer count. Each row is labelled with the fraction of channels kept.

    Args:
        report: the report dict (schema of report.json); reads "layers", "baseline",
            "pruned", "model", "method", "dataset".
        path: file to write; the extension picks the format (.png, .svg or .pdf).
        dpi: resolution of raster output.
    """
    layers = (report or {}).get("layers") or []
    if not layers:
        raise ValueError(
            "Expected `report['layers']` to list at least one prunable layer. "
            f"Received: layers={layers!r}"
        )
    names = [str(layer.get("name", MISSING)) for layer in layers]
    before = np.array([_number(layer.get("channels_before")) for layer in layers], float)
    after = np.array([_number(layer.get("channels_after")) for layer in layers], float)

    n = len(layers)
    longest_name = max(len(name) for name in names)
    label_inches = min(4.0, 0.6 + 0.065 * longest_name)
    fig = Figure(figsize=(8.5 + label_inches, 2.4 + _ROW_INCHES * n), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rows = np.arange(n)
    ax.barh(rows, np.nan_to_num(before), height=0.8, color=_BEFORE_COLOR, label="before pruning")
    ax.barh(rows, np.nan_to_num(after), height=0.5, color=_AFTER_COLOR, label="after pruning")
    ax.set_yticks(rows, names, fontsize=7 if n > 30 else 9)
    ax.set_ylim(n - 0.5, -0.5)  # first layer on top, no empty margin rows
    ax.set_ylabel("layer (network order)")
    ax.set_xlabel("output channels (count)")
    if n > 30:
        # A tall figure: repeat the channel axis on top so it is in view at both ends.
        ax.secondary_xaxis("top").set_xlabel("output channels (count)")
    ax.grid(axis="x", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    # A layer can end wider than it began (scratch's expansion): the longer bar sets the room.
    longer = np.fmax(before, after)
    widest = np.nanmax(longer) if np.isfinite(longer).any() else 1.0
    ax.set_xlim(0, widest * 1.16)  # room for the kept-% labels right of the longest bar
    for row, (end, b, a) in enumerate(zip(longer, before, after)):
        kept = format_percent(a / b if b > 0 and np.isfinite(a) else None, digits=0)
        text = f"{_int_text(a)}/{_int_text(b)} ({kept})"
        ax.text((end if np.isfinite(end) else 0) + widest * 0.01, row, text, va="center",
                fontsize=6.5 if n > 30 else 8, color="#333333")

    fig.suptitle(_channels_title(report, before, after), fontsize=11)
    # Outside the axes: never on top of a bar, however long the list.
    fig.legend(loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    save_figure(fig, path)


def plot_trajectory(xs, ys, path, *, xlabel, ylabel, title, best_so_far=True, mode="max",
                    dpi=100):
    """Draws a search trajectory (e.g. NCS fitness per generation, reward per episode).

    Args:
        xs: x values (generation, epoch, ...), or None for 0, 1, 2, ...
        ys: one value per x; None or NaN entries are left out of the line.
        path: file to write; the extension picks the format (.png, .svg or .pdf).
        xlabel: x-axis label, with its unit.
        ylabel: y-axis label, with its unit.
        title: figure title.
        best_so_far: also draw the running best of `ys`.
        mode: "max" if larger values are better, "min" if smaller are.
        dpi: resolution of raster output.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"Expected `mode` to be 'max' or 'min'. Received: mode={mode!r}")
    ys = np.array([_number(y) for y in ys], float)
    xs = np.arange(len(ys)) if xs is None else np.array([_number(x) for x in xs], float)
    if len(xs) != len(ys):
        raise ValueError(
            f"Expected `xs` and `ys` of the same length. Received: len(xs)={len(xs)}, "
            f"len(ys)={len(ys)}"
        )
    if len(ys) == 0:
        raise ValueError("Expected at least one point. Received: ys=[]")

    fig = Figure(figsize=(7.5, 4.5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    valid = np.isfinite(ys) & np.isfinite(xs)
    marker = "o" if valid.sum() <= 60 else None
    ax.plot(xs[valid], ys[valid], marker=marker, markersize=3.5, linewidth=1.2,
            color=_AFTER_COLOR, label=ylabel, zorder=3)
    if best_so_far and valid.any():
        pick = np.fmax if mode == "max" else np.fmin
        best = pick.accumulate(np.where(valid, ys, np.nan))
        ax.step(xs[valid], best[valid], where="post", linewidth=2.0, color=_BEST_COLOR,
                label=f"best so far ({'highest' if mode == 'max' else 'lowest'})")
        i = int(np.nanargmax(ys) if mode == "max" else np.nanargmin(ys))
        ax.annotate(f"best {ys[i]:.4g}", (xs[i], ys[i]), textcoords="offset points",
                    xytext=(0, 8 if mode == "max" else -14), ha="center", fontsize=8,
                    color=_BEST_COLOR)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.margins(y=0.12)
    ax.legend(loc="best", fontsize=9)
    save_figure(fig, path)


def _channels_title(report, before, after):
    base, pruned = report.get("baseline") or {}, report.get("pruned") or {}
    flops_before, flops_after = _number(base.get("flops")), _number(pruned.get("flops"))
    if not (np.isfinite(flops_before) and np.isfinite(flops_after)):
        # No model totals (e.g. a run that stopped early): use the listed layers' sum.
        flops_before = sum(_number(layer.get("flops_before")) for layer in report["layers"])
        flops_after = sum(_number(layer.get("flops_after")) for layer in report["layers"])
    known = np.isfinite(flops_before) and np.isfinite(flops_after) and flops_before > 0
    flops_kept = flops_after / flops_before if known else None
    flops_before, flops_after = (v if np.isfinite(v) else None for v in (flops_before, flops_after))
    channels_kept = np.nansum(after) / np.nansum(before) if np.nansum(before) > 0 else None
    name = " · ".join(str(report.get(k) or MISSING) for k in ("model", "method", "dataset"))
    return (
        f"Output channels per layer, before (light) and after (dark) pruning: {name}\n"
        f"FLOPs kept {format_percent(flops_kept)} ({format_count(flops_before)} → "
        f"{format_count(flops_after)} MACs); channels kept {format_percent(channels_kept)} "
        f"over {len(before)} layer{'' if len(before) == 1 else 's'}"
    )


def save_figure(fig, path):
    """Writes `fig` atomically in the format `path`'s extension names, then clears it."""
    path = os.fspath(path)
    fmt = _FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise ValueError(
            f"Expected `path` to end in one of {sorted(_FORMATS)}. Received: path={path!r}"
        )
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=fmt)
    finally:
        fig.clear()  # free the drawing now; the figure is not in any global registry
    atomic_write(path, buffer.getvalue(), mode="wb")


def _number(value):
    """A float, with None (a missing value) as NaN."""
    return float("nan") if value is None else float(value)


def _int_text(value):
    return MISSING if not np.isfinite(value) else f"{value:.0f}"
