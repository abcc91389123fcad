"""Benchmark: where OLMP's accuracy loss on mnist5k comes from: the long training, the allocation, or the data.

On mnist5k (3,600 training images) OLMP's LeNets end 0.6-0.8 pp (LeNet-5) and about a point
(LeNet-300-100) below their dense models at the paper's compression or above, where the paper
loses nothing on full MNIST. This script starts from the same pre-trained LeNet as
`olmp_vs_tfmot.py` (the same recipe and seed give the same dense model) and runs the recipe's
solver (`MaskedSGD`: Caffe's SGD with momentum, the "inv" rate, weight decay, batch 64) for the
recipe's iterations, with no search, in three arms:

- dense:    nothing pruned: what the solver's long training alone does to the test accuracy.
- released: the per-layer counts of the paper's released model (docs/PAPERS.md 2.7: LeNet-300-100
            113.5x, LeNet-5 297.7x), the allocation that was lossless on full MNIST.
- olmp:     the per-layer counts OLMP's search found for this seed, read from its
            `olmp_vs_tfmot` results file.

The pruned arms reach their counts by gradual magnitude pruning: every `--mask_every`
iterations until the recipe's `prune_stop`, each layer keeps its largest weights and biases
(by magnitude, pooled), their number falling from all of them to the layer's count along
tfmot's cubic schedule over the first half of that span, then held; after `prune_stop` the
masks are frozen, as in OLMP. This is Zhu and Gupta's gradual pruning (tfmot's), per layer: a
pruned weight is zeroed and gets no gradient, so it never returns. (With DNS's straight-through
gradients a recount swaps in weights that grew while pruned; on a 400-iteration check the loss
then grew from 0.1 to 60 within 200 iterations. DNS changes a mask only where a weight crosses
its layer's fixed threshold, with hysteresis.) If the released allocation loses as much as OLMP
on this data, the loss is the data's at that compression, not the search's.

Writes benchmarks/results/olmp_controls_<model>.json (`_seed<N>` for other seeds).
Run: python benchmarks/olmp_controls.py --model lenet5
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np

from common import RESULTS, results_dir, results_name
from olmp_vs_tfmot import RECIPES, pretrain

RELEASED = {
    # kept weights + biases per layer of the paper's released caffemodels (docs/PAPERS.md 2.7)
    "lenet300_100": {"ip1": 1770, "ip2": 477, "ip3": 102},
    "lenet5": {"conv1": 73, "conv2": 193, "ip1": 813, "ip2": 369},
}
ARMS = ("dense", "released", "olmp")


def _log(message):
    print(f"[bench] {message}", flush=True)


def kept_counts(schedule_fraction, sizes, targets):
    """Per layer, how many entries stay at `schedule_fraction` (0 to 1) of the way to `targets`.

    tfmot's cubic schedule: the count falls fast at first and levels off at the target.
    """
    remaining = (1.0 - min(max(schedule_fraction, 0.0), 1.0)) ** 3
    return [int(round(target + (size - target) * remaining)) for size, target in zip(sizes, targets)]


def magnitude_masks(values, count):
    """0/1 masks (shaped like `values`, a list of arrays) keeping the `count` largest |entries| pooled."""
    flat = np.concatenate([np.abs(np.asarray(v)).ravel() for v in values])
    mask = np.zeros(flat.size, "float32")
    if count >= flat.size:
        mask[:] = 1.0
    elif count > 0:
        mask[np.argpartition(flat, flat.size - count)[flat.size - count :]] = 1.0
    masks, start = [], 0
    for v in values:
        size = int(np.prod(np.shape(v)))
        masks.append(mask[start : start + size].reshape(np.shape(v)))
        start += size
    return masks


def olmp_counts(path):
    """`{layer: kept}` of the OLMP run recorded in an olmp_vs_tfmot results file."""
    with open(path) as f:
        recorded = json.load(f)
    return {layer["layer"]: int(layer["kept"]) for layer in recorded["olmp"]["kept_per_layer"]}, recorded


def run_arm(name, model, data, strategy, settings, targets, *, mask_every, eval_every):
    """Trains a masked copy of `model` with the recipe's solver; prunes to `targets` (`{layer: kept}`) if given."""
    from keras_prune.methods.olmp.dns import DNSLayers, to_masked, weight_pairs
    from keras_prune.methods.olmp.engine import MaskedSGD
    from keras_prune.training import evaluate_accuracy

    with strategy.scope():
        masked, names = to_masked(model)
    if targets is not None and set(targets) != set(names):
        raise ValueError(f"Expected counts for the layers {names}. Received: {sorted(targets)}")
    dns = DNSLayers(masked, names)
    for layer in dns.layers:
        layer.straight_through = False  # read when the step is first traced, below: pruned weights get no gradient
    trainer = MaskedSGD(masked, dns, strategy, learning_rate=settings.learning_rate,
                        lr_policy=settings.lr_policy, weight_decay=settings.weight_decay)
    goal = [targets[n] for n in names] if targets is not None else None
    ramp = max(1, settings.prune_stop // 2)
    no_thresholds, no_triggers = np.zeros(len(names), "float32"), np.zeros(len(names), bool)

    def prune(iteration):
        counts = kept_counts(iteration / ramp, dns.sizes, goal)
        for layer, count in zip(dns.layers, counts):
            pairs = weight_pairs(layer)
            for (weight, mask), new in zip(pairs, magnitude_masks([w.numpy() * m.numpy() for w, m in pairs], count)):
                mask.assign(new)
                weight.assign(weight.numpy() * new)

    batches = trainer.iterator(data.train)
    trajectory, start = [], time.perf_counter()
    for iteration in range(settings.iterations):
        if goal is not None and iteration <= settings.prune_stop and iteration % mask_every == 0:
            prune(min(iteration, settings.prune_stop))
        x, y = next(batches)
        trainer.step(x, y, no_thresholds, no_triggers)
        if (iteration + 1) % eval_every == 0 or iteration + 1 == settings.iterations:
            accuracy = evaluate_accuracy(masked, data.test, strategy)
            kept = int(dns.nonzero().sum())
            trajectory.append({"iteration": iteration + 1, "test_accuracy": accuracy, "nonzero_params": kept})
            _log(f"{name}: iteration {iteration + 1}: test accuracy {accuracy:.4f}, "
                 f"{dns.total / kept:.1f}x ({kept:,} of {dns.total:,} kept)")
    nonzero = dns.nonzero()
    return {
        "test_accuracy": trajectory[-1]["test_accuracy"],
        "compression": dns.total / int(nonzero.sum()),
        "nonzero_params": int(nonzero.sum()),
        "params": dns.total,
        "kept_per_layer": {n: int(k) for n, k in zip(names, nonzero)},
        "target_per_layer": targets,
        "trajectory": trajectory,
        "seconds": time.perf_counter() - start,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(RECIPES), default="lenet5")
    parser.add_argument("--seed", type=int, default=0, help="the recipe's seed: init and training order (the data split is fixed)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"which of {', '.join(ARMS)} to run")
    parser.add_argument("--olmp_results", default=None, help="the olmp_vs_tfmot results file of the olmp arm "
                        "(default: the recipe's file of this model and seed in benchmarks/results)")
    parser.add_argument("--mask_every", type=int, default=100, help="iterations between magnitude recounts")
    parser.add_argument("--eval_every", type=int, default=5000, help="iterations between test evaluations")
    parser.add_argument("--quick", action="store_true", help="2 pre-training epochs and 400 iterations, to check "
                        "the script")
    args = parser.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; choose from {', '.join(ARMS)}")

    from keras_prune.export.report_io import write_json
    from keras_prune.methods.olmp.settings import OLMPSettings
    from keras_prune.pipeline import _environment

    counts, recorded = None, None
    if "olmp" in arms:
        path = args.olmp_results or os.path.join(RESULTS, results_name(f"olmp_vs_tfmot_{args.model}", args.seed))
        if not os.path.exists(path):
            parser.error(f"the olmp arm needs an olmp_vs_tfmot results file: {path} does not exist "
                         "(run benchmarks/olmp_vs_tfmot.py with this --model and --seed, or pass --olmp_results)")
        counts, recorded = olmp_counts(path)
    overrides = {"seed": args.seed}
    if args.quick:
        overrides.update(pretrain_epochs=2, olmp_iterations=400, olmp_prune_stop=200)
        args.eval_every, args.mask_every = 200, 20
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        config, strategy, data, model, dense_accuracy, pretrain_seconds = pretrain(args.model, overrides, workdir)
    if recorded is not None and not args.quick and abs(recorded["dense_test_accuracy"] - dense_accuracy) > 1e-6:
        _log(f"warning: this dense model scores {dense_accuracy:.4f}, the olmp run's {recorded['dense_test_accuracy']:.4f}"
             " (another machine or code path): the olmp arm's counts come from another starting point")
    settings = OLMPSettings.from_config(config)
    targets = {"dense": None, "released": RELEASED[args.model], "olmp": counts}
    results = {}
    for arm in arms:
        _log(f"{arm}: {settings.iterations} iterations" + (
            f", pruned to {targets[arm]} by magnitude until iteration {settings.prune_stop}" if targets[arm] else ""))
        results[arm] = run_arm(arm, model, data, strategy, settings, targets[arm],
                               mask_every=args.mask_every, eval_every=args.eval_every)
        results[arm]["minus_dense_pp"] = 100 * (results[arm]["test_accuracy"] - dense_accuracy)
    summary = {
        "benchmark": "olmp_controls",
        "model": args.model,
        "dataset": config.dataset,
        "dense_test_accuracy": dense_accuracy,
        "pretrain_seconds": pretrain_seconds,
        "olmp_recorded": None if recorded is None else {
            "test_accuracy": recorded["olmp"]["test_accuracy"], "compression": recorded["olmp"]["compression"],
            "dense_test_accuracy": recorded["dense_test_accuracy"]},
        "arms": results,
        "settings": {"seed": args.seed, "iterations": settings.iterations, "prune_stop": settings.prune_stop,
                     "mask_every": args.mask_every, "learning_rate": settings.learning_rate,
                     "lr_policy": list(settings.lr_policy), "weight_decay": settings.weight_decay,
                     "batch_size": config.batch_size, "quick": args.quick},
        "total_seconds": time.perf_counter() - started,
        **_environment(),
    }
    path = os.path.join(results_dir(args.quick), results_name(f"olmp_controls_{args.model}", args.seed))
    write_json(path, summary)
    _log(f"dense {dense_accuracy:.4f}; " + "; ".join(
        f"{arm} {r['test_accuracy']:.4f} ({r['minus_dense_pp']:+.1f} pp) at {r['compression']:.1f}x"
        for arm, r in results.items()) + f"; wrote {path} in {summary['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
