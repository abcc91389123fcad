"""Benchmark: how fast is surgery, and does removing channels make ResNet-50 faster?

Writes benchmarks/results/surgery.json with:
- seconds to analyse and to prune keras.applications ResNet50 (goal: < 10 s together);
- for ResNet50 at 224x224 with 50% of every internal (non-residual) channel group
  removed: the FLOPs ratio, the measured batch-1 CPU latency ratio, and whether the
  latency ratio is within 1.25x of the FLOPs ratio. Latency is measured on the
  deployable form (BatchNorm folded into the convolutions, as every converter does)
  and, for transparency, on the unfolded Keras models too.

Run: python benchmarks/surgery.py [--repeats 50]
"""

import argparse
import json
import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf
from common import results_dir

from keras_prune.export import fold_batch_norms, measure_latency
from keras_prune.export.report_io import write_json
from keras_prune.graph import analyze, count_flops, count_params, prune_channels


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--output", default=None, help="default: surgery.json in the results folder")
    parser.add_argument("--quick", action="store_true", help="5 timed calls, written to a temporary folder")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 5
    args.output = args.output or os.path.join(results_dir(args.quick), "surgery.json")

    started = time.perf_counter()
    model = keras.applications.ResNet50(weights=None)
    start = time.perf_counter()
    graph = analyze(model)
    analyse_s = time.perf_counter() - start
    internal = [g for g in graph.prunable_groups if len(g.producers) == 1]
    keep = {g.id: np.arange(g.size // 2) for g in internal}
    start = time.perf_counter()
    pruned = prune_channels(model, keep, graph=graph)
    prune_s = time.perf_counter() - start

    dense_flops = count_flops(model, graph=graph).total
    pruned_flops = count_flops(pruned).total
    dense_latency = measure_latency(fold_batch_norms(model), repeats=args.repeats)
    pruned_latency = measure_latency(fold_batch_norms(pruned), repeats=args.repeats)
    unfolded = {
        "dense": measure_latency(model, repeats=args.repeats)["median_ms"],
        "pruned": measure_latency(pruned, repeats=args.repeats)["median_ms"],
    }
    unfolded["ratio"] = round(unfolded["pruned"] / unfolded["dense"], 4)
    flops_ratio = pruned_flops / dense_flops
    latency_ratio = pruned_latency["median_ms"] / dense_latency["median_ms"]
    result = {
        "model": "keras.applications.ResNet50, 224x224x3, weights=None",
        "analyse_seconds": round(analyse_s, 3),
        "prune_seconds": round(prune_s, 3),
        "analyse_plus_prune_goal_met": analyse_s + prune_s < 10.0,
        "groups": {"prunable": len(graph.prunable_groups), "internal_pruned_50pct": len(internal)},
        "flops": {"dense": dense_flops, "pruned": pruned_flops, "ratio": round(flops_ratio, 4)},
        "params": {"dense": count_params(model).total, "pruned": count_params(pruned).total},
        "latency_batch1_ms": {"dense": dense_latency, "pruned": pruned_latency},
        "latency_ratio": round(latency_ratio, 4),
        "latency_ratio_over_flops_ratio": round(latency_ratio / flops_ratio, 4),
        "latency_batch1_ms_unfolded_bn": unfolded,
        "latency_within_1.25x_of_flops_ratio": latency_ratio <= 1.25 * flops_ratio,
        "total_seconds": round(time.perf_counter() - started, 1),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }
    write_json(args.output, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
