"""Regenerates the README's results section and docs/results.md from benchmarks/results/*.json.

The README carries the headline tables: surgery, latency, each comparison across seeds, the
methods' seed-0 runs and the keras.applications verdict. docs/results.md carries all of it plus
every pruned model of every run, scratch's per-run table and the sweep's per-model table, which
would bury the README. Everything between the README's `<!-- results:start -->` and
`<!-- results:end -->` markers, and all of docs/results.md, is rewritten; nothing in them is
typed by hand. Run: python benchmarks/update_readme.py
"""

import functools
import glob
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
START, END = "<!-- results:start -->", "<!-- results:end -->"
FULL_RESULTS = os.path.join("docs", "results.md")  # relative to ROOT


def _load(name):
    path = os.path.join(RESULTS, name)
    return json.load(open(path)) if os.path.exists(path) else None


def _first_runs(pattern):
    """The results files matching `pattern`, without their repeats under other seeds (`across_seeds` has those)."""
    from common import split_seed

    paths = sorted(glob.glob(os.path.join(RESULTS, pattern)))
    return [json.load(open(p)) for p in paths if split_seed(p)[1] == 0]


def _mega(x):
    return f"{x / 1e9:.2f} G" if x >= 1e9 else f"{x / 1e6:.2f} M"


def surgery_section(result):
    if not result:
        return []
    return [
        "**Surgery on ResNet-50** (`benchmarks/surgery.py`, keras.applications ResNet50 at 224x224, "
        "50% of every block-internal channel group removed):",
        "",
        "| analyse + prune | FLOPs dense -> pruned | FLOPs ratio | batch-1 CPU latency dense -> pruned | latency ratio | latency ratio / FLOPs ratio |",
        "|---|---|---|---|---|---|",
        f"| {result['analyse_seconds'] + result['prune_seconds']:.2f} s "
        f"| {_mega(result['flops']['dense'])} -> {_mega(result['flops']['pruned'])} MACs "
        f"| {result['flops']['ratio']:.3f} "
        f"| {result['latency_batch1_ms']['dense']['median_ms']:.1f} -> {result['latency_batch1_ms']['pruned']['median_ms']:.1f} ms "
        f"| {result['latency_ratio']:.3f} | {result['latency_ratio_over_flops_ratio']:.2f} |",
        "",
        "Latency is the median of repeated batch-1 calls on this 2-core CPU, with BatchNorm folded into "
        f"the convolutions as deployment does (unfolded Keras models: ratio {result['latency_batch1_ms_unfolded_bn']['ratio']:.3f}).",
        "",
    ]


def latency_section(counts=None, rounding=None):
    """What channel counts cost on this CPU (channel_counts.json) and what --round_to wins back (round_to_latency.json)."""
    lines = []
    if counts:
        lines += [
            f"**Channel counts and latency** (`benchmarks/channel_counts.py`: a conv net whose {counts['depth']} inner "
            f"layers have c channels between {counts['width']}-channel layers, its SavedModel timed against c = "
            f"{counts['width']} in alternating blocks):",
            "",
            "| inner channels c | FLOPs ratio | batch-1 latency ratio | batch-32 latency ratio |",
            "|---|---|---|---|",
        ]
        for point in counts["points"]:
            latency = point["serving_latency"]
            lines.append(f"| {point['inner_channels']} | {point['flops_ratio']:.3f} "
                         f"| {latency['batch_1']['ratio']:.2f} | {latency['batch_32']['ratio']:.2f} |")
        lines.append("")
    if rounding:
        r = rounding["round_to"]
        lines += [
            f"**`--round_to {r}`** (`benchmarks/round_to_latency.py`: each model pruned to the same FLOPs target by "
            f"one global ranking of filter-L1 scores, with any channel count and with counts rounded to multiples of "
            f"{r}; latency / dense latency of the SavedModels, median of {rounding['rounds']} alternating-block "
            "timings, each timing in brackets):",
            "",
            "| model | FLOPs target | round_to | FLOPs kept | groups off a multiple of 8 | batch-1 latency ratio | batch-32 latency ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in rounding["points"]:
            cells = [
                f"{p['latency_ratio'][batch]:.2f} ({', '.join(f'{v:.2f}' for v in p['latency_ratio_rounds'][batch])})"
                for batch in ("batch_1", "batch_32")
            ]
            lines.append(f"| {p['model']} x{p['width']:g} | {p['target_flops']:g} | {p['round_to']} | {p['flops_ratio']:.3f} "
                         f"| {p['groups_off_a_multiple_of_8']} of {len(p['counts'])} | {cells[0]} | {cells[1]} |")
        lines.append("")
    return lines


def summary_section(seeds=None):
    """Every pruned model of every results file in one table (benchmarks/tabulate_results.py).

    `seeds` is `seeds_section()`'s output, if the caller has it already (else it is built here).
    """
    from tabulate_results import backfill_note, markdown_table, rows

    table = rows(RESULTS)
    if not table:
        return []
    plot = os.path.join(RESULTS, "accuracy_vs_cost.png")
    backfilled = backfill_note(table).rstrip(".")
    return [
        "**Every pruned model, one table** (`benchmarks/tabulate_results.py` over benchmarks/results; mnist5k test "
        "split, this 2-core CPU; latency of the exported SavedModels, BatchNorm folded, loaded back and called "
        "through `serve`; `n/m`: not measured by that run, which predates the measurement"
        + (";" + backfilled if backfilled else "") + "):",
        "",
        *markdown_table(table),
        "",
        *_resolution_note(repeats=bool(seeds_section() if seeds is None else seeds), every_run=True),
        *(["![accuracy vs cost](benchmarks/results/accuracy_vs_cost.png)", ""] if os.path.exists(plot) else []),
    ]


def _resolution_note(accuracy=0.97, repeats=False, every_run=False):
    """How finely the mnist5k test split resolves accuracy, so that readers weigh small differences.

    `every_run`: the note precedes the table of every run (docs/results.md), not the README's summary.
    """
    from keras_prune.data.embedded import load_embedded

    n = len(load_embedded("mnist5k", validation_fraction=0.1).y_test)
    error = 100 * (accuracy * (1 - accuracy) / n) ** 0.5
    if every_run:
        follows = ("; each row is one run, and the next table gives the comparisons repeated with other seeds."
                   if repeats else "; each row is one run.")
    else:
        follows = (". " + ("The next table gives each comparison repeated with other seeds, the method tables after "
                           "it are single runs, and " if repeats else "The method tables below are single runs, and ")
                   + f"[{FULL_RESULTS}]({FULL_RESULTS}) lists every pruned model of every run.")
    return [
        f"How much an accuracy difference means: the mnist5k test split is {n:,} images, so one image is "
        f"{100 / n:.1f} pp and the binomial standard error of an accuracy near {100 * accuracy:.0f}% is "
        f"{error:.1f} pp. TensorFlow's multi-threaded CPU training is not bitwise reproducible, so a run repeated "
        "with the same seed and settings gives a slightly different model. A difference of a few tenths of a point "
        "between two single runs is therefore not evidence either way" + follows,
        "",
    ]


def seeds_section():
    """Each comparison a benchmark makes, repeated with several seeds: mean and spread of the difference."""
    from tabulate_results import across_seeds, rows, seeds_table

    lines = seeds_table(across_seeds(rows(RESULTS)))
    if not lines:
        return []
    return [
        "**Across seeds** (the same benchmark repeated with other seeds: the seed draws the initialisation and "
        "the training order, on the same data split, so every arm and the dense model change together; the difference "
        "is taken within each run, then averaged; sd is the sample standard deviation):",
        "",
        *lines,
        "",
    ]


def sweep_section(per_model=True):
    """The keras.applications sweep's verdict, and with `per_model` its table of every model."""
    sweep = _load("applications_sweep.json")
    if not sweep:
        return []
    models = sweep["models"]
    passed = [n for n in sorted(models) if models[n]["passed"]]
    failed = [n for n in sorted(models) if not models[n]["passed"]]
    rows = []
    for name in sorted(models):
        r = models[name]
        if r["passed"]:
            rows.append(f"| {name} | {r['input_size']} | pass | {r['prunable_groups']} "
                        f"| {100 * r['prunable_channel_share']:.0f}% | {r['flops']['ratio']:.3f} "
                        f"| {r['params']['ratio']:.3f} | {r['seconds']:.0f} s |")
        else:
            share = r.get("prunable_channel_share")
            rows.append(f"| {name} | {r.get('input_size', '')} | **fail** at `{r['failed_stage']}`: "
                        f"{r['reason'].replace('|', '/')} | {r.get('prunable_groups', '')} "
                        f"| {'' if share is None else f'{100 * share:.0f}%'} | | | {r.get('seconds', 0):.0f} s |")
    return [
        f"**keras.applications sweep** (`benchmarks/applications_sweep.py`): every model Keras "
        f"{sweep['versions']['keras']} ships, `weights=None`, 10 classes"
        + (f" (BatchNorm: {sweep['batch_norm']})" if sweep.get("batch_norm") else "")
        + f": analyse, remove "
        f"{100 * sweep['prune_fraction']:.0f}% of the channels of every prunable group, run, outputs equal to the "
        "zero-masked original's (float64), FLOPs and params lower, "
        + ("BatchNorm folding exact (float64), the SavedModel a run ships (folded) and its TFLite conversion with "
           "the folded model's outputs"
           if passed and all(models[n].get("saved_model") == "batch_norm_folded" for n in passed) else
           "SavedModel round trip, TFLite conversion with the same outputs")
        + f". **{len(passed)} of {len(models)} pass**" + (f"; fail: {', '.join(failed)}." if failed else ".")
        + " Channels outside prunable groups are frozen: the model's input and output, and layers with no channel "
        "rule (see `frozen_layers` in the results file)."
        + ("" if per_model else f" Each model's figures: [{FULL_RESULTS}]({FULL_RESULTS})."),
        "",
        *(["| model | input | result | prunable groups | channels in them | FLOPs kept | params kept | time |",
           "|---|---|---|---|---|---|---|---|", *rows, ""] if per_model else []),
    ]


def _structure_variant(result):
    """What sets a run's structure apart from the default, for its model cell: ", round_to 8" for a run
    that rounded its channel counts (`--round_to`), ", residual pruned" for one that also pruned the
    groups tied by residual additions (`--prune_residual`), ", expansion 1" for scratch's random net at
    another width than 1.25 (`--expansion`); "" for none."""
    settings = result.get("settings", {})
    round_to = settings.get("round_to", 1)
    expansion = settings.get("expansion", 1.25)
    return (
        ("" if round_to == 1 else f", round_to {round_to}")
        + (", residual pruned" if settings.get("prune_residual") else "")
        + ("" if expansion == 1.25 else f", expansion {expansion:g}")
    )


def scratch_section():
    results = _first_runs("scratch_vs_slimming_*.json")
    if not results:
        return []
    rows = []
    for result in results:
        r = result["results"]
        settings = result["settings"]
        for name in ("scratch", "scratch_b", "slimming", "l1"):
            if name not in r:
                continue
            row = r[name]
            final = f"{row.get('final_epochs', settings['final_epochs'])} epochs, {row['final_training_seconds']:.0f} s"
            if name.startswith("scratch"):
                search = f"{row['search_epochs']} gate epoch(s)"
            elif name == "slimming":
                search = f"{row['search_epochs']} sparsity-training epochs"
            else:
                search = f"({row['search_epochs']} pre-training epochs: {row['pretrain_seconds']:.0f} s)"
            repeats = len(row.get("test_accuracies", []))
            accuracy = f"{100 * row['test_accuracy']:.2f}" + (f" (mean of {repeats})" if repeats > 1 else "")
            rows.append(
                f"| {result['model']} x{result['width']:g}{_structure_variant(result)} | `{name}` | {accuracy} "
                f"| {row['flops_ratio']:.4f} | {row['params']:,} | {row['search_seconds']:.1f} s | {search} "
                f"| {final} |"
            )
        rows.append(
            f"| | | dense {100 * result['dense_test_accuracy']:.2f} | target {result['target_flops']:g} | | "
            f"**slimming / scratch = {result['search_time_ratio_slimming_over_scratch']:.1f}x** | "
            f"scratch - slimming {_pp(result['accuracy_scratch_minus_slimming_pp'])} pp"
            f"{_repeated(result.get('accuracy_scratch_minus_slimming_pp_per_repeat', []))}, "
            f"scratch - l1 {_pp(result['accuracy_scratch_minus_l1_pp'])} pp"
            f"{_repeated(result.get('accuracy_scratch_minus_l1_pp_per_repeat', []))} "
            f"| whole run {result['total_seconds'] / 60:.1f} min |"
        )
        if "accuracy_scratch_b_minus_slimming_pp" in result:
            rows.append(
                f"| | | | | | | `scratch_b` - slimming {_pp(result['accuracy_scratch_b_minus_slimming_pp'])} pp"
                f"{_repeated(result.get('accuracy_scratch_b_minus_slimming_pp_per_repeat', []))}, "
                f"`scratch_b` - l1 {_pp(result['accuracy_scratch_b_minus_l1_pp'])} pp"
                f"{_repeated(result.get('accuracy_scratch_b_minus_l1_pp_per_repeat', []))} | |"
            )
    return [
        "**Pruning from Scratch vs Network Slimming vs L1** (`benchmarks/scratch_vs_slimming.py`, mnist5k test "
        "split, same FLOPs target against the unexpanded model, same final epochs; `scratch_b` is "
        "scratch with the budget rule of the official code, final epochs / target FLOPs; the zoo width "
        "multiplier sizes each run for this CPU; a run with `--final_repeats` N trains every arm N times with "
        "other seeds: accuracies are means, and sd is the spread of the repeats' differences):",
        "",
        "| model | method | test accuracy % | FLOPs ratio | params | search time | search | final training |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


@functools.cache
def _lstm_defaults():
    from lstm_vs_l1 import arguments

    return arguments().parse_args([])


def _sizing(result):
    """", --children 1, --train_epochs 10": the settings a lstm_vs_l1 run changed from its defaults."""
    from lstm_vs_l1 import BEFORE_REPEATS, LABELLED

    defaults, settings = _lstm_defaults(), {**BEFORE_REPEATS, **result.get("settings", {})}
    labels = [f"--{k} {settings[k]}" for k in LABELLED if k in settings and settings[k] != getattr(defaults, k)]
    return "".join(f", {label}" for label in labels)


def _repeated(points):
    """" (sd 0.31 over 3)": the spread of the per-repeat differences of repeated final trainings, "" for one."""
    if len(points) < 2:
        return ""
    return f" (sd {statistics.stdev(points):.2f} over {len(points)})"


def lstm_section():
    results = _first_runs("lstm_vs_l1_*.json")
    if not results:
        return []
    rows = []
    for result in results:
        lstm, l1 = result["results"]["lstm"], result["results"]["l1"]
        rows.append(
            f"| {result['model']} x{result['width']:g}{_structure_variant(result)}{_sizing(result)} "
            f"| {100 * result['dense_test_accuracy']:.2f} "
            f"| **{100 * result['lstm_flops_reduction']:.1f}%** (paper {100 * result['paper_flops_reduction']:.1f}%) "
            f"| {100 * lstm['test_accuracy']:.2f} ({_pp(-result['lstm_accuracy_loss_pp'])} pp) "
            f"| {100 * l1['test_accuracy']:.2f} at {l1['flops_ratio']:.4f} "
            f"| {_pp(result['accuracy_lstm_minus_l1_pp'])} pp"
            f"{_repeated(result.get('accuracy_lstm_minus_l1_pp_per_repeat', []))} "
            f"| {lstm['structures_evaluated']} children, {lstm['controller_epochs']} controller epochs, "
            f"{lstm['search_seconds'] / 60:.1f} min | {result['total_seconds'] / 60:.1f} min |"
        )
    return [
        "**Where to Prune vs uniform L1 at the same FLOPs** (`benchmarks/lstm_vs_l1.py`, mnist5k test split; "
        "the search stops at the paper's FLOPs reduction (with `--reward target`, by patience or the epoch cap); "
        "both final models get the same final training on train + validation, repeated `--final_repeats` times "
        "with other seeds (3 by default; files from before the setting had one and are labelled `--final_repeats 1`): "
        "accuracies are means, and sd is the spread of the lstm - l1 differences of the repeats):",
        "",
        "| model | dense accuracy % | lstm FLOPs reduction | lstm accuracy % (vs dense) | l1 accuracy % at FLOPs ratio "
        "| lstm - l1 | search | whole benchmark |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


@functools.cache
def _olmp_recipe(model):
    """The `RunConfig` of `model`'s OLMP recipe (its flagfile parsed once), or None without one."""
    from olmp_vs_tfmot import RECIPES, recipe_config

    return recipe_config(model, os.path.join(RESULTS, "unused"), {}) if model in RECIPES else None  # writes nothing


def _variant(result):
    """What a run changed from its recipe (", delta 0.04, held-out constraint, c in [0, 7]"), else ""."""
    settings = result.get("olmp_settings", {})
    recipe = _olmp_recipe(result["model"])
    if recipe is None:
        return ""
    labels = []
    delta = settings.get("olmp_delta", recipe.olmp_delta)
    if delta != recipe.olmp_delta:
        labels.append(f"delta {delta:g}")
    if settings.get("olmp_constraint", "batch") != recipe.olmp_constraint:  # older runs: the training batch
        labels.append(f"held-out constraint ({settings.get('olmp_constraint_examples')} examples)")
    bounds = settings.get("olmp_crate_bounds", recipe.olmp_crate_bounds)
    if bounds != recipe.olmp_crate_bounds:
        labels.append(f"c in [{bounds.replace(',', ', ')}]")
    return "".join(f", {label}" for label in labels)


def olmp_section():
    results = _first_runs("olmp_vs_tfmot_*.json")
    if not results:
        return []
    rows = []
    for result in results:
        olmp, best = result["olmp"], result["tfmot_best"]
        tfmot = f"{best['compression']:.1f}x at {100 * best['test_accuracy']:.2f}" if best else "none of the sweep"
        ratio = result["olmp_over_tfmot_compression"]
        sweep = ", ".join(f"{p['compression']:.0f}x: {100 * p['test_accuracy']:.1f}" for p in result["tfmot"]["sweep"])
        rows.append(
            f"| {result['model']} | {100 * result['dense_test_accuracy']:.2f} "
            f"| **{olmp['compression']:.1f}x** at {100 * olmp['test_accuracy']:.2f} "
            f"| {tfmot} | {f'{ratio:.1f}x' if ratio else 'n/a'} | {sweep} "
            f"| {olmp['iterations']:,} it.{_variant(result)}, "
            f"{(olmp['search_seconds'] + olmp['train_seconds']) / 60:.1f} min "
            f"| {result['total_seconds'] / 60:.1f} min |"
        )
    return [
        "**OLMP vs tfmot gradual magnitude pruning** (`benchmarks/olmp_vs_tfmot.py`, mnist5k test split, the "
        "same pre-trained weights for both; compression = total / non-zero weights and biases; tfmot's figure "
        "is the best of its sweep at OLMP's test accuracy or above, capped at the dense one):",
        "",
        "| model | dense accuracy % | OLMP compression at accuracy % | tfmot best at that accuracy | OLMP / tfmot "
        "| tfmot sweep (compression: accuracy %) | OLMP run | whole benchmark |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def _pp(value):
    """A signed difference in points, "+0.00" for one that rounds to zero (not "-0.00")."""
    return f"{round(value, 2) + 0.0:+.2f}"


def _speed(speedup):
    """"**1.07x** faster" or, below 1, "**1.17x** slower" (never "0.86x faster")."""
    if speedup >= 1.0:
        return f"**{speedup:.2f}x** faster"
    return f"**{1.0 / speedup:.2f}x** slower"


def rnp_section(result=None):
    path = os.path.join(RESULTS, "rnp_vs_static.json")
    if result is None:
        if not os.path.exists(path):
            return []
        result = json.load(open(path))
    dense, latency = result["dense"], result["latency"]
    static = {round(s["rnp_flops_bias"], 6): s for s in result["static"]}
    rows, seen = [], {}
    for point in sorted(result["rnp"]["points"], key=lambda p: (p["speedup"], p["flops_bias"])):
        same = (round(point["speedup"], 4), round(point["accuracy"], 6))
        if same in seen:  # biases past saturation give the same decisions: one row, a bias range
            seen[same]["biases"].append(point["flops_bias"])
            continue
        seen[same] = {"point": point, "biases": [point["flops_bias"]]}
    for entry in seen.values():
        point, biases = entry["point"], entry["biases"]
        match = next((static[round(b, 6)] for b in biases if round(b, 6) in static), None)
        versus = (f"{100 * match['accuracy']:.2f} ({_pp(100 * (point['accuracy'] - match['accuracy']))} pp)"
                  if match else "")
        bias = f"{min(biases):g} to {max(biases):g}" if len(biases) > 1 else f"{biases[0]:g}"
        rows.append(f"| {bias} | {point['speedup']:.2f}x | {100 * point['accuracy']:.2f} | {versus} |")
    settings = result["settings"]
    cpus = result["machine"].get("cpus_available", result["machine"]["cpus"])
    remeasured = result.get("latency_remeasured", [])
    history = ""
    if remeasured:
        speedups = [entry["before"]["latency_speedup"] for entry in remeasured[1:]] + [latency["latency_speedup"]]
        times = "once" if len(speedups) == 1 else f"{len(speedups)} times"
        history = (f" Re-measured {times} since, the trained model exported again with the serving code of the "
                   f"day (`--latency_of`): {', '.join(f'{v:.2f}x' for v in speedups)} (the last is the one above); "
                   f"the run's own measurement was {remeasured[0]['before']['latency_speedup']:.2f}x.")
    parts = result.get("latency_parts")
    if parts:
        history += (f" Forced by the bias (`serve_with_bias`, batch 1, `--latency_of`): every group computed "
                    f"**{parts['all_groups_ms']:.3f} ms**, the fewest (one group per layer) "
                    f"**{parts['fewest_groups_ms']:.3f} ms**, dense {parts['dense_ms']:.3f} ms in the same session.")
    return [
        f"**Runtime Neural Pruning vs static uniform pruning** (`benchmarks/rnp_vs_static.py`, {settings['model']} "
        f"x{settings['width']:g} on mnist5k, test split; dense {100 * dense['accuracy']:.2f}% at "
        f"{_mega(dense['flops'])} MACs; one RNP model, its run-time `flops_bias` swept; static `l1` pruning "
        "at the FLOPs of the RNP points nearest 2x, 3x and 4x, fine-tuned for about as many minibatches as RNP's "
        "backbone saw, with its own optimizer: SGD (momentum 0.9) at 1e-3, where RNP's backbone takes RMSprop at "
        "`--rnp_backbone_learning_rate`):",
        "",
        "| flops_bias | fewer MACs per input (mean) | rnp accuracy % | static at the same FLOPs % (rnp - static) |",
        "|---|---|---|---|",
        *rows,
        "",
        f"RNP is at least as accurate as static pruning at **{result['rnp_wins']}** points. Batch-1 latency "
        f"(median over real test images, both exported SavedModels loaded and called the same way, "
        f"{cpus} CPU core(s)): dense **{dense['latency_ms']:.3f} ms**, RNP **{latency['rnp_ms']:.3f} ms** at "
        f"{latency['speedup_macs']:.2f}x fewer MACs (`flops_bias` {latency['flops_bias']:g}): "
        f"{_speed(latency['latency_speedup'])}.{history} RNP training took "
        f"{result['rnp']['train_seconds'] / 60:.1f} min.",
        "",
    ]


def readme_body(seeds):
    """The README's results section: the headline tables, pointing to docs/results.md for every run."""
    from tabulate_results import rows

    plot = os.path.join(RESULTS, "accuracy_vs_cost.png")
    return (surgery_section(_load("surgery.json"))
            + latency_section(_load("channel_counts.json"), _load("round_to_latency.json"))
            + (_resolution_note(repeats=bool(seeds)) if rows(RESULTS) else [])
            + seeds + olmp_section() + lstm_section() + rnp_section() + sweep_section(per_model=False)
            + (["![accuracy vs cost](benchmarks/results/accuracy_vs_cost.png)", ""] if os.path.exists(plot) else []))


def full_body(seeds):
    """docs/results.md: every table, with every pruned model of every run and scratch's per-run table."""
    lines = (surgery_section(_load("surgery.json"))
             + latency_section(_load("channel_counts.json"), _load("round_to_latency.json"))
             + summary_section(seeds) + seeds + scratch_section()
             + olmp_section() + lstm_section() + rnp_section() + sweep_section())
    return [line.replace("](benchmarks/", "](../benchmarks/") for line in lines]  # the file sits in docs/


def main():
    from keras_prune.export.report_io import atomic_write

    readme = os.path.join(ROOT, "README.md")
    text = open(readme).read()
    for marker in (START, END):  # a lost marker would drop the README's text after the results
        if text.count(marker) != 1:
            raise SystemExit(f"{readme} must hold {marker} exactly once (found {text.count(marker)}); restore it")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    seeds = seeds_section()
    atomic_write(readme, head + START + "\n" + "\n".join(readme_body(seeds)) + "\n" + END + tail)
    full = os.path.join(ROOT, FULL_RESULTS)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    atomic_write(full, "\n".join([
        "# Results: every benchmark run", "",
        "Generated by `python benchmarks/update_readme.py` from `benchmarks/results/*.json`; nothing here is typed "
        "by hand, and the README's results section is the summary of this file. How the benchmarks are run: the "
        "README's [Results](../README.md#results) section.", "",
        *full_body(seeds)]) + "\n")
    print("README results section and", FULL_RESULTS, "regenerated from", RESULTS)


if __name__ == "__main__":
    main()
