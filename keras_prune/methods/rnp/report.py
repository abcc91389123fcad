"""What an RNP run reports: operating points, per-input compute, easy and hard inputs.

The accuracy and mean FLOPs per input are measured on the test split for several
run-time `flops_bias` values (one trained model). Figures go to `<output_dir>/plots`.
"""

import os

import numpy as np
from matplotlib.figure import Figure

from keras_prune.export.plots import save_figure

__all__ = ["evaluate", "operating_points", "plot_easy_hard", "plot_flops_histogram", "plot_operating_points", "plots"]


def evaluate(trainer, dataset, flops_bias):
    """Greedy decisions on every example of `dataset`.

    Returns:
        {"actions" (N, steps) 0-based, "correct" (N,), "flops" (N,) MACs per input,
        decision network included}.
    """
    actions, correct = [], []
    for x, y in dataset:
        episode = trainer.rollout(x, y, epsilon=0.0, flops_bias=flops_bias)
        actions.append(episode["actions"])
        correct.append(episode["correct"])
    actions = np.concatenate(actions)
    flops = trainer.backbone.flops_per_sample(actions) + trainer.decision.macs_per_sample()
    return {"actions": actions, "correct": np.concatenate(correct), "flops": flops}


def operating_points(trainer, dataset, biases):
    """Accuracy and mean FLOPs per input for each bias, plus the per-input results of each."""
    full = trainer.backbone.full_flops
    points, per_input = [], {}
    for bias in biases:
        result = evaluate(trainer, dataset, bias)
        per_input[bias] = result
        mean = float(result["flops"].mean())
        points.append({
            "flops_bias": float(bias),
            "accuracy": float(result["correct"].mean()),
            "mean_flops": mean,
            "flops_ratio": mean / full,
            "speedup": full / mean,
            "mean_groups_per_layer": [round(float(v), 4) for v in result["actions"].mean(axis=0) + 1],
        })
    return points, per_input


def plot_operating_points(points, dense, path, *, static=None, dense_label="dense model"):
    """Accuracy vs mean MACs per input (RNP at each bias; `dense`, the full-cost point named by
    `dense_label`; optional static points)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    order = np.argsort([p["mean_flops"] for p in points])
    ax.plot([points[i]["mean_flops"] / 1e6 for i in order], [100 * points[i]["accuracy"] for i in order],
            "o-", color="#1f5fa8", label="RNP (flops_bias sweep)")
    for xy, biases in _label_clusters([(points[i]["mean_flops"] / 1e6, 100 * points[i]["accuracy"],
                                        points[i]["flops_bias"]) for i in order]):
        text = f"{min(biases):g}..{max(biases):g}" if len(biases) > 1 else f"{biases[0]:g}"
        ax.annotate(text, xy, fontsize=7, textcoords="offset points", xytext=(3, 3))
    if static:
        ax.plot([p["flops"] / 1e6 for p in static], [100 * p["accuracy"] for p in static], "s--",
                color="#d1495b", label="static uniform pruning")
    ax.plot([dense["flops"] / 1e6], [100 * dense["accuracy"]], "k*", markersize=10, label=dense_label)
    ax.set_xlabel("mean M MACs per input")
    ax.set_ylabel("test accuracy %")
    ax.set_title("accuracy vs computation (labels: flops_bias)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def _label_clusters(points, *, closeness=0.04):
    """[(xy, biases)]: points within `closeness` of the plotted span of each other, in both
    axes, share one label (biases that give (nearly) the same decisions would print on top
    of each other). `points` are (x, y, bias), sorted by x."""
    if not points:
        return []
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    dx, dy = closeness * (max(xs) - min(xs) or 1.0), closeness * (max(ys) - min(ys) or 1.0)
    clusters = []
    for x, y, bias in points:
        last = clusters[-1] if clusters else None
        if last and abs(x - last[0][0]) <= dx and abs(y - last[0][1]) <= dy:
            last[1].append(bias)
        else:
            clusters.append(((x, y), [bias]))
    return clusters


def plot_flops_histogram(flops, full_flops, path):
    """Histogram of the MACs each test input got, as a fraction of the dense model's."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.hist(np.asarray(flops) / full_flops, bins=30, color="#1f5fa8")
    ax.set_xlabel("MACs per input / dense MACs")
    ax.set_ylabel("test inputs")
    fig.tight_layout()
    save_figure(fig, path)


def plot_easy_hard(dataset, flops, info, path, *, count=8):
    """Image grid: the `count` inputs that got the least (top row) and most (bottom row) compute."""
    order = np.argsort(flops, kind="stable")
    chosen = {"easy": order[:count], "hard": order[::-1][:count]}
    wanted = set(np.concatenate(list(chosen.values())).tolist())
    images, offset = {}, 0
    for x, _ in dataset:
        x = np.asarray(x)
        for i in range(len(x)):
            if offset + i in wanted:
                images[offset + i] = x[i]
        offset += len(x)
    mean, std = np.asarray(info.mean, "float32"), np.asarray(info.std, "float32")
    fig = Figure(figsize=(1.2 * count, 3.4))
    for row, (label, indices) in enumerate(chosen.items()):
        for col, index in enumerate(indices):
            ax = fig.add_subplot(2, count, row * count + col + 1)
            pixels = np.clip(images[int(index)] * std + mean, 0.0, 1.0)
            ax.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{flops[index] / 1e6:.2f}M", fontsize=7)
            if col == 0:
                ax.set_ylabel(label)
    fig.suptitle("least (easy) and most (hard) compute, MACs per input", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def plots(points, per_input, default_bias, dense, dataset, info, output_dir):
    """Writes the three figures; returns their paths relative to `output_dir`."""
    folder = os.path.join(output_dir, "plots")
    flops = per_input[default_bias]["flops"]
    paths = {
        "operating_points": os.path.join(folder, "rnp_operating_points.png"),
        "flops_histogram": os.path.join(folder, "rnp_flops_histogram.png"),
        "easy_hard": os.path.join(folder, "rnp_easy_hard.png"),
    }
    plot_operating_points(points, dense, paths["operating_points"], dense_label="fine-tuned backbone, every group")
    plot_flops_histogram(flops, dense["flops"], paths["flops_histogram"])
    plot_easy_hard(dataset, flops, info, paths["easy_hard"])
    return {k: os.path.relpath(v, output_dir) for k, v in paths.items()}
