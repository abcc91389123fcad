"""Benchmark: Runtime Neural Pruning against static uniform channel pruning of the same backbone.

One pre-trained backbone (the zoo's `conv4` by default) on mnist5k, this CPU:

- rnp:    `rnp.build` + `rnp.train` (warm-up, rounds of Q-learning and backbone fine-tuning),
          then the test accuracy and mean MACs per input for a sweep of run-time flops_bias
          values (one trained model, the decision network's MACs included).
- static: `l1` (uniform filter-norm pruning of every group) at the mean-FLOPs ratios of the
          RNP operating points nearest to 2x, 3x and 4x fewer MACs, fine-tuned for as many
          minibatches as RNP's backbone saw (warm-up + rounds x backbone steps).
- latency: batch-1 median latency at the operating point closest to `--latency_speedup` (3x)
          theoretical speed-up: the exported RNP SavedModel (the sliced path) against the dense
          backbone exported with BatchNorm folded, both loaded back and called the same way
          (`loaded.serve(image)` on the same real test images, alternated).

Writes benchmarks/results/rnp_vs_static.json (with --quick: the temporary folder's rnp_vs_static.json,
which update_readme never reads).
Run: python benchmarks/rnp_vs_static.py            (full; for the whole machine)
     python benchmarks/rnp_vs_static.py --quick    (a few minutes, to check the script)
     python benchmarks/rnp_vs_static.py --latency_of=RUN_DIR
         (re-measures only the latency of the trained RNP in RUN_DIR, the `run_dir` of the
         results file, exported again with the current serving code; the accuracy and
         FLOPs results stay those of that run, and the file records the re-measurement;
         also `latency_parts`: the RNP forced to compute every group and the fewest)
"""

import argparse
import dataclasses
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from common import RESULTS, results_dir, results_name
from evidence import evidence, use_quick_timing

from keras_prune.data import load_dataset
from keras_prune.export import fold_batch_norms, serving_latency_report
from keras_prune.export.report_io import read_json, write_json
from keras_prune.export.summaries import RunSummaries
from keras_prune.methods import l1, rnp
from keras_prune.methods.base import RunContext
from keras_prune.methods.rnp.report import operating_points, plot_operating_points
from keras_prune.methods.rnp.serving import RNPServing, export_saved_model, serving_latency
from keras_prune.methods.rnp.settings import settings_from_config
from keras_prune.models import get_model
from keras_prune.pipeline import RunConfig, _environment
from keras_prune.training import evaluate_accuracy, make_strategy, train_classifier


def _log(message):
    print(f"[bench] {message}", flush=True)


def _pick_points(points, speedups=(2.0, 3.0, 4.0)):
    """The sweep's points nearest to each wanted MAC speed-up (each point at most once)."""
    chosen = []
    for wanted in speedups:
        free = [p for p in points if p not in chosen]
        if free:
            chosen.append(min(free, key=lambda p: abs(p["speedup"] - wanted)))
    return sorted(chosen, key=lambda p: p["speedup"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="conv4")
    parser.add_argument("--width", type=float, default=2.0, help="conv4 x2: 64-128-256-512 channels, 48 M MACs")
    parser.add_argument("--pretrain_epochs", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--decision_steps", type=int, default=100)
    parser.add_argument("--backbone_steps", type=int, default=100)
    parser.add_argument("--warmup_steps", type=int, default=300)
    parser.add_argument("--penalty", type=float, default=0.1)
    parser.add_argument("--biases", default="-0.2,-0.1,-0.05,0,0.05,0.1,0.2,0.3,0.5")
    parser.add_argument("--latency_speedup", type=float, default=3.0)
    parser.add_argument("--latency_repeats", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None)
    parser.add_argument("--quick", action="store_true", help="tiny phases, to check the script")
    parser.add_argument("--latency_of", default=None, help="a finished run's folder: re-measure its latency only")
    args = parser.parse_args()
    if args.latency_of:
        return remeasure_latency(args.latency_of, args.output or os.path.join(RESULTS, "rnp_vs_static.json"))
    if args.quick:
        args.pretrain_epochs, args.rounds, args.decision_steps, args.backbone_steps = 1, 1, 10, 10
        args.warmup_steps, args.latency_repeats, args.width = 10, 20, 0.5
        use_quick_timing()
    output = args.output or os.path.join(results_dir(args.quick), results_name("rnp_vs_static", args.seed))

    started = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    strategy = make_strategy("auto")
    data = load_dataset("mnist5k", batch_size=args.batch_size, seed=args.seed)
    with strategy.scope():
        base = get_model(args.model, data.info.input_shape, data.info.num_classes, width=args.width, seed=args.seed)
    train_classifier(base, data, strategy, epochs=args.pretrain_epochs, learning_rate=0.01, phase="pretrain", verbose=2)
    dense_accuracy = evaluate_accuracy(base, data.test, strategy)

    out = tempfile.mkdtemp(prefix="rnp_bench_")
    config = RunConfig(
        method="rnp", model=args.model, output_dir=out, batch_size=args.batch_size, seed=args.seed,
        rnp_rounds=args.rounds, rnp_decision_steps=args.decision_steps, rnp_backbone_steps=args.backbone_steps,
        rnp_warmup_steps=args.warmup_steps, rnp_penalty=args.penalty, rnp_operating_points=args.biases,
        learning_rate=1e-3, verbose=2,
    )
    ctx = RunContext(strategy, config, out, RunSummaries(os.path.join(out, "tensorboard")), log=_log)
    start = time.perf_counter()
    trainer = rnp.build(base, strategy, settings_from_config(config), seed=args.seed)
    rnp.train(trainer, data, ctx)
    rnp_seconds = time.perf_counter() - start
    points, _ = operating_points(trainer, data.test, settings_from_config(config).operating_points)
    for point in points:
        _log(f"rnp bias {point['flops_bias']:g}: accuracy {point['accuracy']:.4f}, {point['speedup']:.2f}x")

    steps_per_epoch = max(1, int(data.train.cardinality().numpy()))
    finetune_epochs = max(1, round((args.warmup_steps + args.rounds * args.backbone_steps) / steps_per_epoch))
    static = []
    for point in _pick_points(points):
        static_ctx = dataclasses.replace(ctx, config=dataclasses.replace(
            config, target_flops=point["flops_ratio"], finetune_epochs=finetune_epochs))
        result = l1.run(base, data, static_ctx)
        static.append({
            "target_flops": point["flops_ratio"],
            "flops": trainer.backbone.full_flops * result.details["flops_ratio_after_search"],
            "accuracy": evaluate_accuracy(result.model, data.test, strategy),
            "rnp_accuracy": point["accuracy"],
            "rnp_flops_bias": point["flops_bias"],
            **evidence(base, result.model),
        })
        _log(f"static at {point['flops_ratio']:.3f}: accuracy {static[-1]['accuracy']:.4f} "
             f"(rnp {point['accuracy']:.4f})")

    near = min(points, key=lambda p: abs(p["speedup"] - args.latency_speedup))
    dense_path = os.path.join(out, "dense_saved_model")
    fold_batch_norms(base).export(dense_path, verbose=False)
    times = _serving_times(trainer, near["flops_bias"], dense_path, out, data.test_images(128),
                           args.latency_repeats)
    dense_latency, rnp_latency = times[1]
    serving = serving_latency_report(
        {b: {"median_ms": d, "repeats": args.latency_repeats} for b, (d, _) in times.items()},
        {b: {"median_ms": r, "repeats": args.latency_repeats} for b, (_, r) in times.items()},
        flops_ratio=1.0 / near["speedup"],
    )
    _log(f"latency at {near['speedup']:.2f}x MACs: dense {dense_latency:.3f} ms, rnp {rnp_latency:.3f} ms")

    wins = sum(s["rnp_accuracy"] >= s["accuracy"] for s in static)
    result = {
        "benchmark": "rnp_vs_static",
        "quick": args.quick,
        "settings": vars(args),
        "run_dir": out,
        "dense": {"accuracy": dense_accuracy, "flops": trainer.backbone.full_flops, "latency_ms": dense_latency},
        "rnp": {"points": points, "train_seconds": rnp_seconds, "alpha": trainer.alpha},
        "static": static,
        "rnp_wins": f"{wins} of {len(static)}",
        "latency": {"flops_bias": near["flops_bias"], "speedup_macs": near["speedup"], "rnp_ms": rnp_latency,
                    "dense_ms": dense_latency, "latency_speedup": dense_latency / rnp_latency},
        "serving_latency": serving,
        "total_seconds": time.perf_counter() - started,
        **_environment(),
    }
    plot_operating_points(points, {"flops": trainer.backbone.full_flops, "accuracy": dense_accuracy},
                          os.path.splitext(output)[0] + ".png", static=static)
    write_json(output, result)
    _log(f"rnp >= static at {wins} of {len(static)} points; latency speed-up "
         f"{dense_latency / rnp_latency:.2f}x at {near['speedup']:.2f}x fewer MACs; wrote {output}")


def _latency(trainer, flops_bias, dense_path, out, test_images, repeats):
    """Batch-1 medians (ms) of the dense and the RNP SavedModel, both loaded back and called alike."""
    times = _serving_times(trainer, flops_bias, dense_path, out, test_images, repeats, batch_sizes=(1,))
    return times[1]


def _serving_times(trainer, flops_bias, dense_path, out, test_images, repeats, *, batch_sizes=(1, 32)):
    """{batch size: (dense ms, rnp ms)}: medians of the two SavedModels, loaded back and called alike
    on real test images (RNP's cost depends on the input)."""
    serving = RNPServing(trainer.backbone, trainer.decision, flops_bias)
    loaded = tf.saved_model.load(export_saved_model(serving, os.path.join(out, "saved_model")))
    dense_loaded = tf.saved_model.load(dense_path)
    calls = {"dense": lambda x: {"logits": dense_loaded.serve(x)}, "rnp": loaded.serve}
    times = {}
    for batch_size in batch_sizes:
        medians = _alternated_medians(calls, test_images, repeats, batch_size=batch_size)
        times[batch_size] = (medians["dense"], medians["rnp"])
    return times


def _alternated_medians(calls, test_images, repeats, *, batch_size=1, rounds=3):
    """{name: median ms} of each `calls[name](images)`, timed in turn `rounds` times, so that
    load from other processes hits them all alike."""
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            times[name].append(serving_latency(call, test_images, repeats=repeats, batch_size=batch_size,
                                               max_seconds=10.0))
    return {name: float(np.median(values)) for name, values in times.items()}


def _latency_parts(run_dir, test_images, repeats, *, forced=1e3):
    """Batch-1 medians (ms) of the exported RNP with the bias forcing every group, or the fewest
    (1 per layer), against the dense model: what the dynamic path costs before it saves anything,
    and how much computing less saves."""
    loaded = tf.saved_model.load(os.path.join(run_dir, "saved_model"))
    dense_loaded = tf.saved_model.load(os.path.join(run_dir, "dense_saved_model"))
    calls = {
        "dense_ms": lambda x: {"logits": dense_loaded.serve(x)},
        "all_groups_ms": lambda x: loaded.serve_with_bias(x, tf.constant(-forced)),
        "fewest_groups_ms": lambda x: loaded.serve_with_bias(x, tf.constant(forced)),
    }
    parts = {name: round(ms, 4) for name, ms in _alternated_medians(calls, test_images, repeats).items()}
    _log(f"batch-1 latency parts: {parts}")
    return dict(parts, repeats=repeats, forced_bias=forced)


def remeasure_latency(run_dir, output):
    """Re-exports the trained RNP of `run_dir` with the current serving code and re-times it."""
    result = read_json(output)
    args = argparse.Namespace(**result["settings"])
    strategy = make_strategy("auto")
    data = load_dataset("mnist5k", batch_size=args.batch_size, seed=args.seed)
    with strategy.scope():
        base = get_model(args.model, data.info.input_shape, data.info.num_classes, width=args.width, seed=args.seed)
    config = RunConfig(method="rnp", model=args.model, output_dir=run_dir, rnp_penalty=args.penalty)
    trainer = rnp.build(base, strategy, settings_from_config(config), seed=args.seed)
    trainer.restore(os.path.join(run_dir, rnp.CHECKPOINT))
    flops_bias = result["latency"]["flops_bias"]
    before = dict(result["latency"])
    dense_latency, rnp_latency = _latency(trainer, flops_bias, os.path.join(run_dir, "dense_saved_model"), run_dir,
                                          data.test_images(), args.latency_repeats)
    result["dense"]["latency_ms"] = dense_latency
    result["latency"].update(rnp_ms=rnp_latency, dense_ms=dense_latency, latency_speedup=dense_latency / rnp_latency)
    result["latency_parts"] = _latency_parts(run_dir, data.test_images(), args.latency_repeats)
    result.setdefault("latency_remeasured", []).append({
        "before": before,
        "versions": _environment()["versions"],
        "machine": _environment()["machine"],
        "why": "the trained model exported again with the current serving code",
    })
    write_json(output, result)
    _log(f"latency re-measured at {result['latency']['speedup_macs']:.2f}x MACs: dense {dense_latency:.3f} ms, "
         f"rnp {rnp_latency:.3f} ms ({dense_latency / rnp_latency:.2f}x; was {before['latency_speedup']:.2f}x)")


if __name__ == "__main__":
    main()
