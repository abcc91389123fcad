"""Benchmark: Where to Prune (`lstm`) against uniform L1 pruning at the same FLOPs.

The paper's claim (Zhong et al. 2018): 70.1% fewer FLOPs on VGG and 47.5% on ResNet-56
at comparable accuracy, by choosing per layer where to prune. Here, on mnist5k and this
CPU, for one VGG-style and one CIFAR-ResNet-style zoo model (width multipliers size the
runs to <= 30 minutes each on the whole machine):

1. Train the dense model for `--train_epochs` (the shared starting point).
2. lstm: the search (controller epochs of `--children` samples per parent, each child
   recovered by distillation for `--recovery_epochs`) until the best structure meets the
   paper's FLOPs reduction or `--patience` runs out (with `--reward target`, by patience or
   `--controller_epochs` only: it keeps looking for a more accurate structure at the target); then
   `--final_epochs` on train + validation at the fixed `--final_learning_rate` (or with `--final_schedule`).
3. l1: the same dense model, every searched group cut uniformly by filter L1 norm to the
   FLOPs ratio lstm reached, then the same `--final_epochs` on train + validation.
4. Each final training is repeated `--final_repeats` times from the same starting weights
   (lstm: the best child; l1: the cut dense model), repeat k of either arm with seed
   `repeat_seed(seed, k)` (the random state and how train and validation examples interleave;
   the train split's own reshuffling goes on from wherever the run left it, so the arms' orders
   are not identical); the accuracies are the means. One final training on this CPU varies
   by about a point run to run, as much as the differences the benchmark measures.

Pass/fail per model: reduction >= the paper's, test accuracy within 1 pp of the dense
model, and lstm's test accuracy against l1's. Writes benchmarks/results/lstm_vs_l1_<model>.json
(with --quick, a temporary file: a quick run checks the script, it is not a result).

Run: python benchmarks/lstm_vs_l1.py --model vgg16      (VGG-16 x0.25)
     python benchmarks/lstm_vs_l1.py --model resnet20   (ResNet-20 x0.5, the residual rule of ResNet-56)
     python benchmarks/lstm_vs_l1.py --model vgg16 --quick
"""

import argparse
import os
import statistics
import tempfile
import time

import keras

from common import results_dir, results_name
from evidence import evidence, use_quick_timing
from final_training import copy_model, final_trainings

from keras_prune.data import load_dataset
from keras_prune.export.report_io import write_json
from keras_prune.export.summaries import RunSummaries
from keras_prune.graph import count_flops
from keras_prune.methods import l1, lstm
from keras_prune.methods.base import RunContext
from keras_prune.methods.lstm.method import train_and_validation
from keras_prune.methods.lstm.settings import REWARDS
from keras_prune.models import get_model
from keras_prune.pipeline import RunConfig, _environment
from keras_prune.training import SCHEDULES, evaluate_accuracy, make_strategy, train_classifier


PAPER = {"vgg16": {"width": 0.25, "reduction": 0.701}, "resnet20": {"width": 0.5, "reduction": 0.475}}
"""Per model: the zoo width that fits the time budget, and the paper's FLOPs reduction (VGG-16, ResNet-56)."""


def _log(message):
    print(f"[bench] {message}", flush=True)


def _dense(args, data, strategy):
    keras.utils.set_random_seed(args.seed)
    with strategy.scope():
        model = get_model(args.model, data.info.input_shape, data.info.num_classes, width=args.width, seed=args.seed)
    start = time.perf_counter()
    train_classifier(model, data, strategy, epochs=args.train_epochs, learning_rate=args.train_learning_rate,
                     phase="pretrain", schedule="step", verbose=2)
    return model, time.perf_counter() - start


def _run_config(args, out, target_flops):
    """The methods' settings; their own final training is off (`final_trainings` repeats it)."""
    return RunConfig(
        method="bench", model=args.model, output_dir=out, target_flops=target_flops,
        finetune_epochs=0, batch_size=args.batch_size, learning_rate=args.final_learning_rate,
        schedule=args.final_schedule, seed=args.seed, verbose=2, recovery_epochs=args.recovery_epochs,
        patience=args.patience, lstm_epochs=args.controller_epochs, lstm_children=args.children,
        lstm_parents=args.parents, lstm_learning_rate=args.controller_learning_rate, round_to=args.round_to,
        lstm_reward=args.reward,
    )


def _score(result, data, ctx, args, dense, arm):
    """The arm's final trainings and its measurements (accuracy: the mean over the repeats)."""
    model, accuracies, seconds = final_trainings(
        result.model, data, ctx, epochs=args.final_epochs, repeats=args.final_repeats, seed=args.seed, arm=arm,
        log=_log, prepare=lambda data, seed: train_and_validation(data, args.batch_size, seed=seed),
    )
    dense_flops = count_flops(dense).total
    flops = count_flops(model).total
    return {
        "test_accuracy": statistics.fmean(accuracies),
        "test_accuracies": accuracies,
        "flops": flops,
        "flops_ratio": flops / dense_flops,
        "params": model.count_params(),
        "search_seconds": result.search_seconds,
        "final_training_seconds": statistics.fmean(seconds),
        **evidence(dense, model),
    }


def arguments():
    """The benchmark's command line (its defaults are the sizing the README calls the default run)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(PAPER), default="vgg16")
    parser.add_argument("--width", type=float, default=None, help="zoo width multiplier (default: PAPER[model])")
    parser.add_argument("--train_epochs", type=int, default=15)
    parser.add_argument("--train_learning_rate", type=float, default=0.02)
    parser.add_argument("--recovery_epochs", type=int, default=1, help="paper: 10 (MNIST); one here to fit 30 min")
    parser.add_argument("--children", type=int, default=2)
    parser.add_argument("--parents", type=int, default=5)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--controller_epochs", type=int, default=10)
    parser.add_argument("--controller_learning_rate", type=float, default=0.001)
    parser.add_argument("--reward", choices=REWARDS, default="gated",
                        help="the search's reward (--lstm_reward); with 'target' it looks on past the target "
                             "for the most accurate structure at it, until --patience or --controller_epochs")
    parser.add_argument("--final_epochs", type=int, default=10)
    parser.add_argument("--final_learning_rate", type=float, default=0.01, help="the final training's (paper: 1e-3, fixed, for 100-250 epochs)")
    parser.add_argument("--final_schedule", choices=SCHEDULES, default="constant",
                        help="the final training's learning-rate schedule (paper: constant); a decaying one ends "
                             "each training at a small step, so the repeats scatter less")
    parser.add_argument("--final_repeats", type=int, default=3,
                        help="final trainings per arm (other seeds, same for both arms); accuracies are their means")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--round_to", type=int, default=1,
                        help="lstm and l1 keep multiples of this many channels per group (8: fast CPU kernels)")
    parser.add_argument("--tag", default="", help="suffix of the results file, to keep a variant beside the default")
    parser.add_argument("--quick", action="store_true", help="tiny phases on 5 batches, to check the script")
    return parser


LABELLED = ("reward", "train_epochs", "recovery_epochs", "children", "parents", "patience", "controller_epochs",
            "final_epochs", "final_schedule", "final_repeats")
"""The settings that shape or size a run (a run that changes them is labelled so in the README)."""

BEFORE_REPEATS = {"final_repeats": 1}
"""The value of a LABELLED setting in results files written before the setting existed."""


def main():
    args = arguments().parse_args()
    if args.final_repeats < 1:
        raise SystemExit(f"--final_repeats must be at least 1. Received: {args.final_repeats}")
    paper = PAPER[args.model]
    args.width = args.width or paper["width"]
    target = round(1.0 - paper["reduction"], 6)
    if args.quick:
        args.train_epochs, args.final_epochs, args.recovery_epochs = 1, 1, 1
        args.controller_epochs, args.children, args.parents = 2, 2, 2
        args.final_repeats = min(args.final_repeats, 2)
        use_quick_timing()

    started = time.perf_counter()
    strategy = make_strategy("auto")
    data = load_dataset("mnist5k", batch_size=args.batch_size, seed=args.seed)
    if args.quick:
        data = data.limited(5, args.batch_size)
    dense, train_seconds = _dense(args, data, strategy)
    dense_flops = count_flops(dense).total
    dense_accuracy = evaluate_accuracy(dense, data.test, strategy)
    _log(f"dense {args.model} x{args.width:g}: test accuracy {dense_accuracy:.4f}, {dense_flops / 1e6:.2f} M MACs")
    results = {}
    with tempfile.TemporaryDirectory() as out:
        summaries = RunSummaries(os.path.join(out, "tensorboard"))
        ctx = RunContext(strategy, _run_config(args, out, target), out, summaries, log=_log)
        result = lstm.run(copy_model(dense, strategy), data, ctx)
        results["lstm"] = _score(result, data, ctx, args, dense, "lstm")
        details = result.details
        results["lstm"].update(
            controller_epochs=details["controller_epochs"], structures_evaluated=details["structures_evaluated"],
            stopped=details["stopped"], sensitivity=details["sensitivity"], epochs=details["epochs"],
        )
        reached = results["lstm"]["flops_ratio"]
        _log(f"l1 at lstm's FLOPs ratio {reached:.4f}")
        ctx = RunContext(strategy, _run_config(args, out, reached), out, summaries, log=_log)
        results["l1"] = _score(l1.run(copy_model(dense, strategy), data, ctx), data, ctx, args, dense, "l1")
        summaries.close()

    loss_pp = 100 * (dense_accuracy - results["lstm"]["test_accuracy"])
    summary = {
        "benchmark": "lstm_vs_l1",
        "model": args.model,
        "width": args.width,
        "dataset": "mnist5k",
        "paper_flops_reduction": paper["reduction"],
        "dense_flops": dense_flops,
        "dense_test_accuracy": dense_accuracy,
        "dense_training_seconds": train_seconds,
        "settings": vars(args),
        "results": results,
        "lstm_flops_reduction": 1.0 - results["lstm"]["flops_ratio"],
        "lstm_accuracy_loss_pp": loss_pp,
        "accuracy_lstm_minus_l1_pp": 100 * (results["lstm"]["test_accuracy"] - results["l1"]["test_accuracy"]),
        "accuracy_lstm_minus_l1_pp_per_repeat": [
            100 * (a - b) for a, b in zip(results["lstm"]["test_accuracies"], results["l1"]["test_accuracies"])
        ],
        "meets_paper_reduction": 1.0 - results["lstm"]["flops_ratio"] >= paper["reduction"],
        "within_1pp": loss_pp <= 1.0,
        "total_seconds": time.perf_counter() - started,
        **_environment(),
    }
    folder = results_dir(args.quick)  # a quick check is not a result
    stem = f"lstm_vs_l1_{args.model}{'_' + args.tag if args.tag else ''}"
    path = os.path.join(folder, results_name(stem, args.seed))
    write_json(path, summary)
    _log(
        f"lstm: {100 * summary['lstm_flops_reduction']:.1f}% fewer FLOPs (paper {100 * paper['reduction']:.1f}%), "
        f"test accuracy {100 * results['lstm']['test_accuracy']:.2f}% ({-loss_pp:+.2f} pp vs dense), "
        f"{summary['accuracy_lstm_minus_l1_pp']:+.2f} pp vs l1 at the same FLOPs (means of {args.final_repeats} "
        f"final training(s)); wrote {path} "
        f"in {summary['total_seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
