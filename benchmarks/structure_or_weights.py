"""Benchmark: is a scratch_vs_slimming gap in the structure or in the inherited weights?

`scratch_vs_slimming.py` compares structures trained differently: scratch's structure from
fresh weights, slimming's and l1's fine-tuned from the weights of a full training run. This
script takes one of its results files, rebuilds the slimming and l1 structures from the channel
counts recorded there, and trains each from fresh weights exactly as the scratch arm was trained
(the same data split, final epochs, schedule, repeats and repeat seeds). Then all three
structures have been trained the same way, and:

- scratch - <arm>_fresh is the difference between the structures alone;
- <arm> - <arm>_fresh is what the inherited weights are worth to <arm>.

Writes benchmarks/results/structure_or_weights_<stem of the results file>.json.
Run: python benchmarks/structure_or_weights.py benchmarks/results/scratch_vs_slimming_resnet20_long64.json
"""

import argparse
import json
import os
import statistics
import tempfile
import time

from common import results_dir
from final_training import final_trainings
from scratch_vs_slimming import _context, _fresh, _log, build_parser

from keras_prune.data import load_dataset
from keras_prune.export.report_io import write_json
from keras_prune.graph import analyze, count_flops, prune_channels
from keras_prune.pipeline import _environment
from keras_prune.training import make_strategy

ARMS = ("slimming", "l1")


def structure_keep(graph, layers):
    """`{group id: indices}` that gives every prunable group of `graph` the channel count its producer
    has in `layers` (a results file's per-layer records); which channels is immaterial, since the
    structure is trained from fresh weights."""
    counts = {layer["name"]: layer["channels_after"] for layer in layers}
    keep = {}
    for group in graph.prunable_groups:
        kept = {counts[name] for name in group.producers if name in counts}
        if len(kept) > 1:
            raise ValueError(f"Group {group.id!r} has producers with different recorded counts: {sorted(kept)}")
        if kept:
            keep[group.id] = list(range(kept.pop()))
    return keep


def recorded_settings(recorded):
    """The settings a scratch_vs_slimming results file ran with, as its parsed arguments. Files written
    before a flag existed lack it; its default is what the script did then."""
    return argparse.Namespace(**{**vars(build_parser().parse_args([])), **recorded["settings"]})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a scratch_vs_slimming results file")
    args_in = parser.parse_args()
    with open(args_in.results) as f:
        recorded = json.load(f)
    if recorded.get("benchmark") != "scratch_vs_slimming":
        raise SystemExit(f"{args_in.results} is not a scratch_vs_slimming results file.")
    args = recorded_settings(recorded)

    started = time.perf_counter()
    strategy = make_strategy("auto")
    data = load_dataset("mnist5k", batch_size=args.batch_size, seed=args.seed)
    reference = _fresh(args, data.info, strategy)
    graph = analyze(reference)
    results = recorded["results"]
    arms = {}
    with tempfile.TemporaryDirectory() as out:
        ctx = _context(args, out, strategy)
        for arm in ARMS:
            with strategy.scope():
                structure = prune_channels(reference, structure_keep(graph, results[arm]["layers"]), graph=graph)
            flops = count_flops(structure).total
            if flops != results[arm]["flops"]:
                raise SystemExit(f"The rebuilt {arm} structure has {flops} FLOPs, the recorded one {results[arm]['flops']}.")
            _log(f"{arm}_fresh: the {arm} structure ({flops} FLOPs) trained from fresh weights like scratch's")
            _, accuracies, seconds = final_trainings(
                structure, data, ctx, epochs=args.final_epochs, repeats=args.final_repeats, seed=args.seed,
                arm=f"{arm}_fresh", log=_log, fresh=True,
            )
            fresh = statistics.fmean(accuracies)
            arms[arm] = {
                "fresh_test_accuracy": fresh,
                "fresh_test_accuracies": accuracies,
                "fine_tuned_test_accuracy": results[arm]["test_accuracy"],
                "params": structure.count_params(),
                "flops": flops,
                "final_training_seconds": statistics.fmean(seconds),
                "accuracy_scratch_minus_fresh_pp": 100 * (results["scratch"]["test_accuracy"] - fresh),
                "accuracy_fine_tuned_minus_fresh_pp": 100 * (results[arm]["test_accuracy"] - fresh),
            }
    summary = {
        "benchmark": "structure_or_weights",
        "source": os.path.basename(args_in.results),
        "model": recorded["model"],
        "width": recorded["width"],
        "seed": args.seed,
        "final_epochs": args.final_epochs,
        "final_repeats": args.final_repeats,
        "scratch_test_accuracy": results["scratch"]["test_accuracy"],
        "scratch_params": results["scratch"]["params"],
        "arms": arms,
        "total_seconds": time.perf_counter() - started,
        **_environment(),
    }
    stem = os.path.splitext(os.path.basename(args_in.results))[0]
    path = os.path.join(results_dir(), f"structure_or_weights_{stem}.json")
    write_json(path, summary)
    _log(
        "; ".join(
            f"{arm}: scratch - fresh {a['accuracy_scratch_minus_fresh_pp']:+.2f} pp, "
            f"fine-tuned - fresh {a['accuracy_fine_tuned_minus_fresh_pp']:+.2f} pp"
            for arm, a in arms.items()
        )
        + f"; wrote {path} in {summary['total_seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
