"""One table and one set of plots from every benchmark results file in a folder.

Each benchmark writes its own JSON (its arms, its comparison); `rows(folder)` reads them
all into one row per pruned model: method, model, accuracy dense -> pruned, FLOPs kept,
params, compression, the exported SavedModels' batch-1 and batch-32 latency dense ->
pruned, search time. A value a results file does not have (an older run, from before
SavedModel latency was recorded) is shown as "n/m" (not measured), never guessed.

Repeats of a benchmark with other seeds (`<stem>_seed<N>.json`, see `common.results_name`)
are put together by `across_seeds`: for each comparison the benchmark makes (CLAIMS), the
accuracy difference per seed, its mean and sample standard deviation. One run's difference
of a few tenths of a point is within the noise of a 1,000-image test split; the spread
across seeds says how much a difference means.

`tabulate(folder)` writes `summary.md`, `summary.json`, `accuracy_vs_cost.png` and one
`structure_<results file>.png` per results file with per-layer structure.
Run: python benchmarks/tabulate_results.py [FOLDER]   (default: benchmarks/results)
"""

import glob
import json
import os
import sys

import numpy as np

from common import RESULTS, split_seed

NOT_MEASURED = "n/m"
BACKFILLED = " †"
"""Marks a latency that a later rerun of the arm measured (benchmarks/backfill_tfmot_latency.py)."""
CLAIMS = {
    # benchmark: (method, compared with); "dense" is the run's own dense model
    "scratch_vs_slimming": [("scratch", "slimming"), ("scratch", "l1"), ("scratch_b", "slimming"),
                            ("scratch_b", "l1")],
    "lstm_vs_l1": [("lstm", "l1"), ("lstm", "dense")],
    "olmp_vs_tfmot": [("olmp", "dense")],
    "rnp_vs_static": [("rnp", "static l1"), ("rnp", "dense")],
}
"""The accuracy comparisons each benchmark exists to make; a method compared with several rows
(static pruning at several FLOPs) is compared with the row built for it (`pair`), else with the
one nearest its FLOPs."""
COLUMNS = ("method", "model", "accuracy % dense -> pruned", "FLOPs kept", "params dense -> pruned",
           "compression", "batch-1 ms dense -> pruned", "batch-32 ms dense -> pruned", "search", "source")


def _row(source, method, model, dense_accuracy, accuracy, flops_ratio, *, params=None, dense_params=None,
         nonzero=None, compression=None, serving=None, search_seconds=None, layers=None, unstructured=False,
         latency_backfilled=False):
    if compression is None and dense_params and nonzero:
        compression = dense_params / nonzero
    return {
        "source": source, "method": method, "model": model, "dense_accuracy": dense_accuracy,
        "accuracy": accuracy, "flops_ratio": flops_ratio, "params": params, "dense_params": dense_params,
        "compression": compression, "serving_latency": serving, "search_seconds": search_seconds,
        "layers": layers, "unstructured": unstructured, "latency_backfilled": latency_backfilled,
    }


def _arm(source, name, model, dense_accuracy, arm):
    return _row(source, name, model, dense_accuracy, arm["test_accuracy"], arm["flops_ratio"],
                params=arm.get("params"), dense_params=arm.get("dense_params"), nonzero=arm.get("nonzero_params"),
                serving=arm.get("serving_latency"), search_seconds=arm.get("search_seconds"),
                layers=arm.get("layers"))


def _arms(source, result):
    """scratch_vs_slimming and lstm_vs_l1: one arm per method under `results`."""
    model = f"{result['model']} x{result['width']:g}"
    return [_arm(source, name, model, result["dense_test_accuracy"], arm) for name, arm in result["results"].items()]


def _olmp(source, result):
    olmp, best, dense = result["olmp"], result["tfmot_best"], result["dense_test_accuracy"]
    evidence = olmp.get("evidence") or {}
    rows = [_row(source, "olmp", result["model"], dense, olmp["test_accuracy"], 1.0, params=olmp["params"],
                 dense_params=olmp["params"], compression=olmp["compression"],
                 serving=evidence.get("serving_latency"), search_seconds=olmp["search_seconds"],
                 layers=evidence.get("layers"), unstructured=True)]
    if best:
        rows.append(_row(source, "tfmot", result["model"], dense, best["test_accuracy"], 1.0,
                         params=olmp["params"], dense_params=olmp["params"], compression=best["compression"],
                         serving=best.get("serving_latency"), search_seconds=best.get("seconds"), unstructured=True,
                         latency_backfilled="serving_latency_source" in best))
    return rows


def _rnp(source, result):
    dense, latency = result["dense"], result["latency"]
    model = f"{result['settings']['model']} x{result['settings']['width']:g}"
    point = next(p for p in result["rnp"]["points"] if p["flops_bias"] == latency["flops_bias"])
    measured = {"batch_1": {
        "dense_ms": latency["dense_ms"], "pruned_ms": latency["rnp_ms"], "ratio": latency["rnp_ms"] / latency["dense_ms"]}}
    # `rnp_vs_static.py --latency_of` re-measures `latency` (batch 1) only: its serving_latency is then stale.
    serving = measured if result.get("latency_remeasured") else (result.get("serving_latency") or measured)
    rows = [dict(_row(source, "rnp", model, dense["accuracy"], point["accuracy"], point["flops_ratio"],
                      serving=serving, search_seconds=result["rnp"]["train_seconds"]), pair=latency["flops_bias"])]
    for arm in result["static"]:  # each static arm was built for one RNP point: `pair` is that point's bias
        rows.append(dict(_row(source, "static l1", model, dense["accuracy"], arm["accuracy"],
                              arm["flops"] / dense["flops"], params=arm.get("params"),
                              dense_params=arm.get("dense_params"), nonzero=arm.get("nonzero_params"),
                              serving=arm.get("serving_latency"), layers=arm.get("layers")),
                         pair=arm.get("rnp_flops_bias")))
    return rows


def _pipeline(source, result):
    base, pruned = result["baseline"], result["pruned"]
    return [_row(source, result["method"], result["model"], base["accuracy"], pruned["accuracy"],
                 result["flops_ratio"], params=pruned["params"], dense_params=base["params"],
                 nonzero=pruned["nonzero_params"], serving=result.get("serving_latency"),
                 search_seconds=result.get("search_seconds"), layers=result.get("layers"))]


def _adapter(result):
    kind = result.get("benchmark")
    if kind in ("scratch_vs_slimming", "lstm_vs_l1"):
        return _arms
    if kind == "olmp_vs_tfmot":
        return _olmp
    if kind == "rnp_vs_static":
        return _rnp
    if "baseline" in result and "pruned" in result and "method" in result:
        return _pipeline
    return None


def _seed(result):
    """The seed a results file ran with (each benchmark records its settings)."""
    if "seed" in result:
        return result["seed"]
    for key in ("settings", "olmp_settings", "config"):
        if isinstance(result.get(key), dict) and "seed" in result[key]:
            return result[key]["seed"]
    return None


def rows(folder=RESULTS):
    """One row per pruned model over every results file in `folder` (files of other kinds are skipped)."""
    table = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path) as f:
            result = json.load(f)
        adapter = _adapter(result) if isinstance(result, dict) else None
        if adapter is not None:
            for row in adapter(os.path.basename(path), result):
                table.append(dict(row, seed=_seed(result), benchmark=result.get("benchmark")))
    return table


def _cost(row):
    return row["compression"] if row["unstructured"] else row["flops_ratio"]


def across_seeds(table):
    """Per results file stem and comparison of CLAIMS: the accuracy difference (pp) of every seed run.

    Returns one record per (stem, model, method, compared with): `seeds`, `differences_pp` (in seed
    order), `mean_pp`, `std_pp` (sample standard deviation; None for one seed), `min_pp`,
    `max_pp`, and `cost` (the method's FLOPs kept, or compression if unstructured, per seed).
    """
    runs = {}
    for row in table:  # a stem rerun on another model (another --width) is another comparison
        stem, _ = split_seed(row["source"])
        runs.setdefault((stem, row["model"]), {}).setdefault(row["source"], []).append(row)
    records = []
    for (stem, model), files in sorted(runs.items()):
        kind = next(iter(files.values()))[0]["benchmark"]
        for method, other in CLAIMS.get(kind, []):
            seeds, differences, costs = [], [], []
            for source, rows_of_run in files.items():
                mine = [r for r in rows_of_run if r["method"] == method]
                if not mine:
                    continue
                row = mine[0]
                if other == "dense":
                    reference = row["dense_accuracy"]
                else:
                    theirs = [r for r in rows_of_run if r["method"] == other]
                    if not theirs:
                        continue
                    paired = [r for r in theirs if r.get("pair") is not None and r["pair"] == row.get("pair")]
                    nearest = min(theirs, key=lambda r: abs(r["flops_ratio"] - row["flops_ratio"]))
                    reference = (paired[0] if paired else nearest)["accuracy"]
                seeds.append(row["seed"] if row["seed"] is not None else split_seed(source)[1])
                differences.append(100 * (row["accuracy"] - reference))
                costs.append(_cost(row))
            if not seeds:
                continue
            unstructured = row["unstructured"]
            order = np.argsort(seeds)
            differences = [differences[i] for i in order]
            values = np.asarray(differences)
            records.append({
                "stem": stem, "method": method, "versus": other, "unstructured": unstructured,
                "model": model, "seeds": [seeds[i] for i in order], "differences_pp": differences,
                "mean_pp": float(values.mean()), "std_pp": float(values.std(ddof=1)) if len(values) > 1 else None,
                "min_pp": float(values.min()), "max_pp": float(values.max()), "cost": [costs[i] for i in order],
            })
    return records


def _signed(value, digits):
    """`value` with its sign, and no "-0.00" for a difference that rounds to zero."""
    value = round(value, digits) + 0.0
    return f"{value:+.{digits}f}"


def seeds_table(records):
    """The comparisons run with more than one seed, as a markdown table (empty if none)."""
    repeated = [r for r in records if len(r["seeds"]) > 1]
    if not repeated:
        return []
    lines = ["| method | versus | model | seeds | accuracy difference pp: mean ± sd | per seed | "
             "FLOPs kept or compression, per seed | source |", "|---|---|---|---|---|---|---|---|"]
    for r in repeated:  # the source names the files exactly: `stem*` would match other tags too (long, long16)
        cost = ", ".join(f"{c:.1f}x" if r["unstructured"] else f"{c:.3f}" for c in r["cost"])
        versus = "dense" if r["versus"] == "dense" else f"`{r['versus']}`"
        lines.append(
            f"| `{r['method']}` | {versus} "
            f"| {r['model']} | {', '.join(map(str, r['seeds']))} | **{_signed(r['mean_pp'], 2)} ± {r['std_pp']:.2f}** "
            f"| {', '.join(_signed(d, 1) for d in r['differences_pp'])} | {cost} | `{r['stem']}[_seedN].json` |")
    return lines


def _latency_cell(row, batch):
    times = (row["serving_latency"] or {}).get(f"batch_{batch}")
    if not times:
        return NOT_MEASURED
    mark = BACKFILLED if row.get("latency_backfilled") else ""
    return f"{times['dense_ms']:.2f} -> {times['pruned_ms']:.2f} ({times['pruned_ms'] / times['dense_ms']:.2f}x){mark}"


def _count(value):
    return NOT_MEASURED if value is None else f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:.1f} k"


def backfill_note(table):
    """The footnote on latencies marked BACKFILLED, with a leading space; empty if `table` has none."""
    if not any(r.get("latency_backfilled") for r in table):
        return ""
    return (f"{BACKFILLED}: measured by a later rerun of tfmot's arm with the file's recorded settings "
            "(`benchmarks/backfill_tfmot_latency.py`), the file's run predating tfmot's latency; a stripped "
            "tfmot model keeps dense kernels, so its latency does not depend on which weights are zero.")


def markdown_table(table):
    """The rows as one markdown table (COLUMNS)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in table:
        params = _count(row["params"])
        if row["params"] and row["dense_params"]:
            params = f"{_count(row['dense_params'])} -> {params}"
        flops = "1 (unstructured)" if row["unstructured"] else f"{row['flops_ratio']:.3f}"
        compression = f"{row['compression']:.1f}x" if row["compression"] else NOT_MEASURED
        search = NOT_MEASURED if row["search_seconds"] is None else (
            f"{row['search_seconds']:.1f} s" if row["search_seconds"] < 120 else f"{row['search_seconds'] / 60:.1f} min")
        cells = [f"`{row['method']}`", row["model"],
                 f"{100 * row['dense_accuracy']:.2f} -> {100 * row['accuracy']:.2f}", flops, params, compression,
                 _latency_cell(row, 1), _latency_cell(row, 32), search, f"`{row['source']}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot_accuracy_vs_cost(table, path):
    """Accuracy change against FLOPs kept (structured methods) and against compression (unstructured)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from keras_prune.export.plots import save_figure

    fig = Figure(figsize=(12, 5), dpi=110)
    FigureCanvasAgg(fig)
    structured, unstructured = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    methods = sorted({r["method"] for r in table})
    markers = dict(zip(methods, "osD^v<>ph*XP"))
    colors = {m: f"C{i}" for i, m in enumerate(sorted({r['model'] for r in table}))}
    for row in table:
        delta = 100 * (row["accuracy"] - row["dense_accuracy"])
        ax, x = (unstructured, row["compression"]) if row["unstructured"] else (structured, row["flops_ratio"])
        ax.scatter(x, delta, marker=markers[row["method"]], color=colors[row["model"]], s=46, edgecolor="black",
                   linewidth=0.5, zorder=3)
    for ax in (structured, unstructured):
        ax.axhline(0, color="grey", linewidth=0.8, zorder=1)
        ax.grid(alpha=0.3)
        ax.set_ylabel("test accuracy change vs dense (pp)")
    structured.set_xlabel("FLOPs kept (pruned / dense MACs)")
    structured.set_title("Channel pruning: accuracy vs FLOPs")
    unstructured.set_xscale("log")
    # Plain numbers at a few round values: log-axis minor labels (2x10^1, 3x10^1, ...) overlap.
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    unstructured.xaxis.set_major_locator(FixedLocator([10, 20, 50, 100, 200, 500, 1000, 2000]))
    unstructured.xaxis.set_major_formatter(ScalarFormatter())
    unstructured.xaxis.set_minor_locator(NullLocator())
    unstructured.xaxis.set_minor_formatter(NullFormatter())
    unstructured.set_xlabel("compression (dense weights / non-zero weights, log scale)")
    unstructured.set_title("Weight pruning: accuracy vs compression")
    shapes = [structured.scatter([], [], marker=markers[m], color="white", edgecolor="black", label=m) for m in methods]
    swatches = [structured.scatter([], [], marker="s", color=c, label=model) for model, c in colors.items()]
    fig.legend(handles=shapes, loc="lower left", bbox_to_anchor=(0.06, 0.0), ncol=min(len(shapes), 5), fontsize=8,
               title="method (marker)", title_fontsize=8, frameon=False)
    fig.legend(handles=swatches, loc="lower right", bbox_to_anchor=(0.96, 0.0), ncol=min(len(swatches), 4),
               fontsize=8, title="model (colour)", title_fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.3, wspace=0.25)
    save_figure(fig, path)


def structure_lines(arms, names):
    """The lines of a structure plot: `(label, channels kept, non-zero weights)` per arm over the layers
    `names`. Arms with the very same structure share one line, labelled "scratch = scratch_b": drawn
    apart, the second would hide the first and its legend entry would point at nothing."""
    methods = [row["method"] for row in arms]
    lines = []
    for row in arms:
        by_name = {layer["name"]: layer for layer in row["layers"]}
        kept = [by_name[n]["channels_after"] / max(by_name[n]["channels_before"], 1) if n in by_name else float("nan")
                for n in names]
        dense_weights = [1.0 - by_name[n]["sparsity"] if n in by_name else float("nan") for n in names]
        label = row["method"]
        if methods.count(label) > 1:  # several points of one method (static l1 at three budgets): say which
            label += f" at {row['flops_ratio']:.3f} of the FLOPs"
        same = next((i for i, (_, k, w) in enumerate(lines)
                     if np.array_equal(k, kept, equal_nan=True) and np.array_equal(w, dense_weights, equal_nan=True)), None)
        if same is None:
            lines.append((label, kept, dense_weights))
        else:
            lines[same] = (f"{lines[same][0]} = {label}", kept, dense_weights)
    return lines


def plot_structure(table, source, path):
    """Per layer, the share of channels (and of non-zero weights) each arm of one results file kept."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from keras_prune.export.plots import save_figure

    arms = [r for r in table if r["source"] == source and r["layers"]]
    if not arms:
        return None
    names = [layer["name"] for layer in arms[0]["layers"]]
    fig = Figure(figsize=(max(8, 0.32 * len(names) + 3), 7), dpi=110)
    FigureCanvasAgg(fig)
    channels = fig.add_subplot(2, 1, 1)
    weights = fig.add_subplot(2, 1, 2, sharex=channels)
    lowest = 1.0
    for i, (label, kept, dense_weights) in enumerate(structure_lines(arms, names)):
        style = dict(marker="o", markersize=3, linewidth=1.2, color=f"C{i}", label=label)
        channels.plot(range(len(names)), kept, **style)
        weights.plot(range(len(names)), dense_weights, **style)
        lowest = min(lowest, float(np.nanmin(dense_weights, initial=1.0)))
    channels.set_ylabel("channels / dense model's")
    weights.set_ylabel("non-zero weights / dense model's")
    weights.set_yscale("log")
    # Plain labels (0.3, not 3 x 10^-1) at 1, 2, 3 and 5 of each decade, none on the other minor ticks;
    # on a narrow range (0.4 to 1 or less) at every tenth, else only 0.5 and 1 would be labelled.
    subs = tuple(range(1, 10)) if lowest >= 0.4 else (1.0, 2.0, 3.0, 5.0)
    weights.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    weights.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    weights.yaxis.set_minor_formatter(NullFormatter())
    for ax in (channels, weights):
        ax.grid(alpha=0.3)
        ax.axhline(1.0, color="grey", linewidth=0.8, zorder=1)  # above 1: wider than dense (scratch's expansion)
    channels.set_ylim(0, max(1.05, 1.05 * float(np.nanmax([line.get_ydata() for line in channels.get_lines()[:-1]]))))
    channels.tick_params(labelbottom=False)
    weights.set_xticks(range(len(names)))
    weights.set_xticklabels(names, rotation=90, fontsize=7)
    channels.set_title(f"Per-layer structure: {arms[0]['model']} ({source})")
    channels.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def tabulate(folder=RESULTS):
    """Writes summary.md, summary.json and the plots for `folder`; returns what summary.json holds."""
    from keras_prune.export.report_io import atomic_write, write_json

    table = rows(folder)
    seeds = across_seeds(table)
    repeated = seeds_table(seeds)
    plots = []
    if table:
        plot_accuracy_vs_cost(table, os.path.join(folder, "accuracy_vs_cost.png"))
        plots.append("accuracy_vs_cost.png")
    first_of_stem = {}
    for source in sorted({r["source"] for r in table}):  # a run's repeats with other seeds: one structure plot
        first_of_stem.setdefault(split_seed(source)[0], source)
    for source in sorted(first_of_stem.values()):
        path = plot_structure(table, source, os.path.join(folder, f"structure_{os.path.splitext(source)[0]}.png"))
        if path:
            plots.append(os.path.basename(path))
    text = "\n".join(["# Benchmark summary", "", *markdown_table(table), "",
                      "Latency: the exported SavedModels (BatchNorm folded), loaded back and called through "
                      "`serve`, median of repeated calls after warm-up; `n/m`: not measured by that run. "
                      "Search: the method's search; for `tfmot`, the training its pruning schedule runs in; "
                      "for `rnp`, its training." + backfill_note(table), "",
                      *(["## Across seeds", "", *repeated, ""] if repeated else []),
                      *[f"![{p}]({p})" for p in plots], ""])
    atomic_write(os.path.join(folder, "summary.md"), text)
    summary = {"rows": [{k: v for k, v in r.items() if k != "layers"} for r in table], "across_seeds": seeds,
               "plots": plots}
    write_json(os.path.join(folder, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else RESULTS
    result = tabulate(folder)
    print(f"{len(result['rows'])} rows; {os.path.join(folder, 'summary.md')}; plots: {', '.join(result['plots'])}")
