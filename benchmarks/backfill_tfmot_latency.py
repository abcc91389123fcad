"""Measures tfmot's serving latency for olmp_vs_tfmot results written before the benchmark measured it.

Results files written before tfmot's arm exported its models hold no latency for tfmot's chosen
model (the table shows `n/m`). This script runs that arm again, per model and seed, with the
settings the file records: the same recipe pre-training, then tfmot's sweep in its own process.
It times the rerun's model at the file's chosen sparsity against the rerun's dense twin, exactly
as `olmp_vs_tfmot.py` does, and writes the times into the file under `tfmot_best`, with
`serving_latency_source` saying where they come from.

Why a rerun measures the same thing: tfmot's stripped model keeps dense kernels whose zeros a CPU
multiplies like any other value, so its latency is a property of the architecture and the batch,
not of which weights are zero. The rerun's accuracy at that sparsity is recorded beside the times
(CPU training is not bitwise reproducible across the library's versions); the file's accuracy,
compression and every OLMP figure are left as they were.

Run: python benchmarks/backfill_tfmot_latency.py            # every file that lacks it
     python benchmarks/backfill_tfmot_latency.py FILE...    # these files
"""

import argparse
import datetime
import glob
import json
import os
import tempfile
import time

PRETRAIN_SETTINGS = ("seed", "pretrain_epochs", "pretrain_learning_rate", "batch_size")
"""The recorded settings the pre-training depends on: files that share them share one rerun."""


def _log(message):
    print(f"[backfill] {message}", flush=True)


def needs_latency(result):
    """True for an olmp_vs_tfmot result whose tfmot choice has no measured latency."""
    best = result.get("tfmot_best") if result.get("benchmark") == "olmp_vs_tfmot" else None
    return bool(best) and not best.get("serving_latency")


def rerun_key(result):
    """What one rerun of tfmot's arm must match: model, pre-training, tfmot epochs and sparsities."""
    settings = result["olmp_settings"]
    sparsities = ",".join(f"{point['sparsity']:g}" for point in result["tfmot"]["sweep"])
    return (result["model"], *(settings[name] for name in PRETRAIN_SETTINGS), result["tfmot"]["epochs"], sparsities)


def group_by_rerun(paths):
    """{rerun_key: [path, ...]} over the files of `paths` that need tfmot's latency, in path order."""
    groups = {}
    for path in sorted(paths):
        with open(path) as f:
            result = json.load(f)
        if needs_latency(result):
            groups.setdefault(rerun_key(result), []).append(path)
    return groups


def rerun_tfmot(key, workdir):
    """Pre-trains as the files did and runs tfmot's sweep; returns the worker's result (with its exports)."""
    import olmp_vs_tfmot

    model, *pretrain_values, epochs, sparsities = key
    overrides = dict(zip(PRETRAIN_SETTINGS, pretrain_values))
    olmp_vs_tfmot.pretrain(model, overrides, workdir)
    args = argparse.Namespace(model=model, sparsities=sparsities, tfmot_epochs=epochs)
    return olmp_vs_tfmot.run_tfmot_process(args, workdir, seed=0)  # the files it backfills trained with seed 0


def backfill(path, tfmot, started_at):
    """Times the rerun's model at `path`'s chosen sparsity and writes the times into `path`."""
    import olmp_vs_tfmot

    from keras_prune.export.report_io import write_json
    from keras_prune.pipeline import _environment

    with open(path) as f:
        result = json.load(f)
    best = result["tfmot_best"]
    point = next(p for p in tfmot["sweep"] if abs(p["sparsity"] - best["sparsity"]) < 1e-9)
    best["serving_latency"] = olmp_vs_tfmot.tfmot_latency(tfmot, point)
    best["serving_latency_source"] = {
        "script": "benchmarks/backfill_tfmot_latency.py",
        "date": started_at,
        "what": "a later run of the same tfmot arm (same model, recorded pre-training settings and seed, "
                "same sweep), its model at this sparsity timed against its dense twin",
        "rerun_test_accuracy": point["test_accuracy"],
        "rerun_nonzero_params": point["nonzero_params"],
        "rerun_twin_dense_accuracy": tfmot["twin_dense_accuracy"],
        **_environment(),
    }
    write_json(path, result)
    times = best["serving_latency"]
    _log(f"{os.path.basename(path)}: tfmot at sparsity {best['sparsity']:g}: batch 1 "
         f"{times['batch_1']['dense_ms']:.2f} -> {times['batch_1']['pruned_ms']:.2f} ms, batch 32 "
         f"{times['batch_32']['dense_ms']:.2f} -> {times['batch_32']['pruned_ms']:.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="olmp_vs_tfmot results files (default: every one that lacks it)")
    args = parser.parse_args()
    from common import results_dir

    paths = args.files or glob.glob(os.path.join(results_dir(), "olmp_vs_tfmot_*.json"))
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        parser.error(f"no such results file: {', '.join(missing)}")
    groups = group_by_rerun(paths)
    if not groups:
        _log("every file already has tfmot's latency; nothing to do")
        return
    started_at = datetime.date.today().isoformat()
    _log(f"{sum(map(len, groups.values()))} file(s) in {len(groups)} rerun(s) of tfmot's arm")
    for number, (key, group) in enumerate(groups.items(), start=1):
        start = time.perf_counter()
        _log(f"rerun {number}/{len(groups)}: {key[0]} seed {key[1]} for {', '.join(map(os.path.basename, group))}")
        with tempfile.TemporaryDirectory() as workdir:
            tfmot = rerun_tfmot(key, workdir)
            for path in group:
                backfill(path, tfmot, started_at)
        _log(f"rerun {number}/{len(groups)} done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
