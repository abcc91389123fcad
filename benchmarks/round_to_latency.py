"""Benchmark: does `--round_to 8` turn a FLOPs cut into a latency cut on this CPU?

`channel_counts.py` showed that a conv whose channel count is not a multiple of 8 runs
slowly here. This prunes the same models to the same FLOPs target twice, with one global
ranking of filter-L1 scores (`global_budget`, the rule of scratch and slimming): once with
any channel count, once with counts rounded to multiples of `--round_to`; both SavedModels
are timed against the dense one in alternating blocks (`compare_serving_latency`, as in
every benchmark), `--rounds` times (the speed of this shared CPU drifts between minutes, so
each point keeps every round and its median). Latency does not depend on the weights' values,
so no training is needed: the structures are those a method would reach from these scores,
the timing is real.

Writes benchmarks/results/round_to_latency.json.
Run: python benchmarks/round_to_latency.py [--round_to 8] [--rounds 3] [--quick]
"""

import argparse
import os
import time

import keras
import numpy as np

from common import results_dir
from evidence import TIMING, use_quick_timing

from keras_prune.criteria import filter_norms
from keras_prune.export.report_io import write_json
from keras_prune.export.serving import compare_serving_latency
from keras_prune.graph import analyze, count_flops, prune_channels
from keras_prune.methods.budget import global_budget
from keras_prune.methods.l1 import select_groups
from keras_prune.models import get_model
from keras_prune.pipeline import _environment

BATCHES = ("batch_1", "batch_32")
CASES = (
    # (zoo model, width, FLOPs target): the benchmark models, and ResNet-20 at full width, where
    # rounding to 8 can still reach half the FLOPs (x0.5's 8-channel stage cannot go below 8).
    ("resnet20", 1.0, 0.5),
    ("resnet20", 0.5, 0.65),
    ("vgg16", 0.25, 0.5),
    ("vgg16", 0.25, 0.3),
)


def _prune(model, graph, groups, target, round_to):
    scores = {g.id: filter_norms(graph, g) for g in groups}
    budget = global_budget(graph, groups, scores, target, round_to=round_to)
    pruned = prune_channels(model, budget.keep, graph=graph)
    counts = [budget["counts"][g.id] for g in groups]
    return pruned, budget["ratio"], counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round_to", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="timings of each pair; the median ratio is reported")
    parser.add_argument("--quick", action="store_true", help="the first case, one round of 3 timed calls, a temporary folder")
    args = parser.parse_args()
    cases = CASES[:1] if args.quick else CASES
    if args.quick:
        args.rounds = 1
        use_quick_timing()
    started = time.perf_counter()
    points = []
    for name, width, target in cases:
        keras.utils.set_random_seed(0)
        dense = get_model(name, (28, 28, 1), 10, width=width, seed=0)
        graph = analyze(dense)
        groups = select_groups(graph)
        for round_to in (1, args.round_to):
            pruned, ratio, counts = _prune(dense, graph, groups, target, round_to)
            flops_ratio = count_flops(pruned).total / count_flops(dense).total
            rounds = [compare_serving_latency(dense, pruned, flops_ratio, **TIMING) for _ in range(args.rounds)]
            ratios = {batch: [r[batch]["ratio"] for r in rounds] for batch in BATCHES}
            off_multiple = sum(1 for g, c in zip(groups, counts) if c % 8 and c != g.size)
            points.append({
                "model": name, "width": width, "target_flops": target, "round_to": round_to,
                "flops_ratio": flops_ratio, "counts": counts, "sizes": [g.size for g in groups],
                "groups_off_a_multiple_of_8": off_multiple, "latency_ratio_rounds": ratios,
                "latency_ratio": {batch: float(np.median(values)) for batch, values in ratios.items()},
                "serving_latency": rounds,
            })
            print(f"[bench] {name} x{width:g} target {target:g} round_to {round_to}: FLOPs {flops_ratio:.3f}, "
                  f"{off_multiple}/{len(groups)} groups off a multiple of 8; latency / dense: " + "; ".join(
                      f"{batch} {', '.join(f'{v:.2f}' for v in values)}" for batch, values in ratios.items()), flush=True)
    summary = {
        "benchmark": "round_to_latency",
        "round_to": args.round_to,
        "criterion": "filter L1 norm of the seed-0 initialisation, one global ranking",
        "timing": dict(TIMING),
        "rounds": args.rounds,
        "points": points,
        "total_seconds": time.perf_counter() - started,
        **_environment(),
    }
    path = os.path.join(results_dir(args.quick), "round_to_latency.json")
    write_json(path, summary)
    print(f"[bench] wrote {path} in {summary['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
