"""What the `lstm` report shows: per-layer sensitivity, the search trajectory, every structure."""

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_prune.export.plots import save_figure

__all__ = ["describe", "sensitivity", "write_plots"]


def sensitivity(search, *, top=None):
    """Per group: how much and how often the best structures pruned it, and how often the controller chose to.

    A layer the search leaves wide in its best structures is one whose pruning costs
    accuracy: the paper's reading of the learned decisions as layer sensitivity.

    Args:
        search: a finished `LSTMSearch`.
        top: how many of the best pruned structures (the order of `search.ranked()`, the
            unpruned network left out) to read (default: `settings.parents`).

    Returns:
        A list of dicts, one per group in model order: "mean_pruned_in_top" is the fraction
        of its channels the `top` best structures removed on average, "share_pruned_in_top"
        the fraction of them that removed any.
    """
    original = np.asarray(search.space.original, float)
    ranked = search.ranked()
    best = search.best()["counts"]
    pruned = [r for r in ranked if r["model_file"] is not None]
    counts = np.asarray([r["counts"] for r in pruned[: top or search.settings.parents]], float).reshape(-1, len(original))
    pruned_top = 1.0 - counts / original
    rows = []
    for i, group in enumerate(search.space.groups):
        rows.append(
            {
                "group": group.id,
                "original": int(original[i]),
                "best": int(best[i]),
                "pruned_in_best": round(float(1.0 - best[i] / original[i]), 4),
                "mean_pruned_in_top": round(float(pruned_top[:, i].mean()), 4) if len(counts) else 0.0,
                "share_pruned_in_top": round(float((pruned_top[:, i] > 0).mean()), 4) if len(counts) else 0.0,
                "prune_decisions": int(search.decisions[i]),
                "prune_frequency": round(float(search.decisions[i] / max(search.samples, 1)), 4),
            }
        )
    return rows


def describe(search):
    """The report's `method_details` for a finished search."""
    best = search.best()
    candidates = sorted(search.candidates.values(), key=lambda r: r["id"])
    return {
        "stopped": search.stopped,
        "controller_epochs": search.epoch,
        "structures_evaluated": len(candidates) - 1,
        "cache_hits": search.cache_hits,
        "decisions_sampled": search.samples,
        "reference_validation_accuracy": search.reference_accuracy,
        "best_structure": {k: best[k] for k in ("id", "flops_ratio", "accuracy", "reward", "epoch")},
        "groups": search.space.ids,
        "sensitivity_top_structures": min(search.settings.parents, len(candidates) - 1),
        "sensitivity": sensitivity(search),
        "epochs": search.history,
        "structures": [
            {
                "id": r["id"],
                "parent": search.candidates[r["parent"]]["id"] if r["parent"] else None,
                "epoch": r["epoch"],
                "channels": r["key"],
                "flops_ratio": round(r["flops_ratio"], 6),
                "validation_accuracy": round(r["accuracy"], 6),
                "reward": round(r["reward"], 6),
                "recovery_seconds": r["seconds"],
            }
            for r in candidates
        ],
    }


def write_plots(details, folder, *, title):
    """plots/lstm_sensitivity.png and plots/lstm_reward.png."""
    _plot_sensitivity(details["sensitivity"], details["sensitivity_top_structures"],
                      os.path.join(folder, "lstm_sensitivity.png"), title=title)
    if details["epochs"]:
        _plot_rewards(details["epochs"], os.path.join(folder, "lstm_reward.png"), title=title)


def _plot_rewards(epochs, path, *, title):
    """Per controller epoch: the mean reward of its children (is the controller learning?), its
    best child, and the best structure found so far (what the search returns)."""
    x = [e["epoch"] for e in epochs]
    fig = Figure(figsize=(7.5, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lines = (("mean_reward", "mean reward of the epoch's children", "o-", "#1f5fa8"),
             ("max_reward", "best child of the epoch", "^--", "#7a9cc6"),
             ("best_reward", "best structure so far", "s-", "#d1495b"))
    for key, label, style, color in lines:
        y = [np.nan if e.get(key) is None else e[key] for e in epochs]
        ax.plot(x, y, style, color=color, markersize=4, linewidth=1.4, label=label)
    ax.set_xlabel("controller epoch")
    ax.set_ylabel("reward")
    ax.set_title(f"lstm search: {title}", fontsize=11)
    ax.grid(color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.legend(loc="best", fontsize=9)
    save_figure(fig, path)


def _plot_sensitivity(rows, top, path, *, title):
    names = [r["group"] for r in rows]
    n = len(rows)
    fig = Figure(figsize=(9.0, 2.4 + 0.22 * n), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = np.arange(n)
    ax.barh(y - 0.2, [r["pruned_in_best"] for r in rows], height=0.4, color="#1f5fa8", label="pruned in the best structure")
    ax.barh(y + 0.2, [r["mean_pruned_in_top"] for r in rows], height=0.4, color="#c9d3df",
            label=f"mean over the {top} best pruned structures")
    ax.plot([r.get("share_pruned_in_top", np.nan) for r in rows], y + 0.2, "D", color="#2a9d5c", markersize=5,
            label=f"share of the {top} best pruned structures that pruned it")
    ax.plot([r["prune_frequency"] for r in rows], y, "o", color="#d1495b", markersize=4,
            label="share of sampled decisions that pruned")
    ax.set_yticks(y, names, fontsize=7 if n > 30 else 9)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlim(0, 1.02)  # a marker at 1 stays whole
    ax.set_xlabel("fraction of channels removed (bars) / share that pruned (markers)")
    ax.set_title(f"Layer sensitivity learned by the LSTM: {title}", fontsize=11)
    ax.grid(axis="x", color="#e6e6e6")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    save_figure(fig, path)
