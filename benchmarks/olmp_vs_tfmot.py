"""Benchmark: OLMP against tfmot's gradual magnitude pruning, same LeNet, weights and data.

One run, one machine, one table:

1. Build the zoo LeNet, pre-train it as its OLMP recipe says, measure the dense test
   accuracy, and save its weights and the data split.
2. olmp:  the recipe (`flags/olmp_<model>_mnist.flags`) from those weights: DNS masked
          training with NCS-searched per-layer thresholds (docs/PAPERS.md 2.4).
3. tfmot: in its own process (importing tfmot switches the process to tf_keras), a
          tf_keras twin of the same LeNet gets the same starting weights (the run stops
          if its dense accuracy is more than one test image off ours) and is pruned with
          `prune_low_magnitude` and `PolynomialDecay`, uniform sparsity for every layer, the tfmot tutorial
          recipe (Adam 1e-3, initial sparsity 0.5; the schedule ends at 2/3 of the
          steps, then the last third recovers at the final sparsity), once per
          sparsity of `--sparsities`.

Compression is total / non-zero weights and biases of the Dense and Conv layers, for
both. tfmot's figure is the highest compression of the sweep whose test accuracy is at
least the comparison accuracy: OLMP's own, or the dense model's if OLMP is above it.

Latency: OLMP's pruned model is exported and timed against the dense zoo LeNet
(`evidence`); tfmot's chosen model is exported by its process, stripped of the pruning
wrappers, and timed against the dense tf_keras twin exported the same way. Both are
unstructured sparsity in dense kernels: a CPU runs them at the dense model's speed.

Writes benchmarks/results/olmp_vs_tfmot_<model>.json.
Run: python benchmarks/olmp_vs_tfmot.py --model lenet300_100
     python benchmarks/olmp_vs_tfmot.py --model lenet5
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPES = {
    "lenet300_100": os.path.join(HERE, os.pardir, "flags", "olmp_lenet300_100_mnist.flags"),
    "lenet5": os.path.join(HERE, os.pardir, "flags", "olmp_lenet5_mnist.flags"),
}
DEFAULT_SPARSITIES = "0.9,0.95,0.97,0.98,0.99,0.995,0.9975"
TFMOT_EXPORTS = "tfmot_saved_models"
"""The worker's SavedModels in the work folder: `dense` (the twin) and one per sparsity."""


def _log(message):
    print(f"[bench] {message}", flush=True)


def recipe_config(model, output_dir, overrides):
    """The `RunConfig` of `model`'s OLMP recipe, as `bin/prune --flagfile=...` would build it."""
    from absl import flags

    from keras_prune.cli.flags import config_from_flags, define_flags

    values = flags.FlagValues()
    define_flags(values)
    argv = ["olmp_vs_tfmot", f"--flagfile={RECIPES[model]}", f"--output_dir={output_dir}", "--overwrite"]
    argv += [f"--{name}={value}" for name, value in overrides.items()]
    values(argv)
    return config_from_flags(values)


def _weights(model):
    return {f"{layer.name}:{i}": np.asarray(w) for layer in model.layers for i, w in enumerate(layer.weights)}


def _compression(model):
    """Total / non-zero weights and biases over the Dense and Conv layers (either Keras)."""
    total = nonzero = 0
    for layer in model.layers:
        if type(layer).__name__ not in ("Dense", "Conv2D"):
            continue
        for weight in layer.weights:
            values = np.asarray(weight)
            total += values.size
            nonzero += int(np.count_nonzero(values))
    return total, nonzero


def pretrain(model_name, overrides, workdir):
    """Pre-trains `model_name` as its OLMP recipe (with `overrides`) says and saves what the tfmot twin needs.

    Returns the run's config, strategy, data, the dense model, its test accuracy and the seconds it took.
    """
    import keras

    from keras_prune.data import as_numpy, load_dataset
    from keras_prune.models import get_model
    from keras_prune.training import evaluate_accuracy, make_strategy, train_classifier

    config = recipe_config(model_name, os.path.join(workdir, "olmp_run"), overrides)
    strategy = make_strategy("auto")
    data = load_dataset(config.dataset, batch_size=config.batch_size, seed=config.seed)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = get_model(config.model, data.info.input_shape, data.info.num_classes, seed=config.seed)
    start = time.perf_counter()
    train_classifier(
        model, data, strategy, epochs=config.pretrain_epochs, learning_rate=config.pretrain_learning_rate,
        phase="pretrain", verbose=2,
    )
    pretrain_seconds = time.perf_counter() - start
    dense_accuracy = evaluate_accuracy(model, data.test, strategy)
    _log(f"dense {config.model}: test accuracy {dense_accuracy:.4f} after {config.pretrain_epochs} epochs")

    x_train, y_train = as_numpy(data.train)
    x_test, y_test = as_numpy(data.test)
    np.savez(os.path.join(workdir, "data.npz"), x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    np.savez(os.path.join(workdir, "weights.npz"), **_weights(model))
    return config, strategy, data, model, dense_accuracy, pretrain_seconds


def run_olmp(args, workdir):
    """Pre-trains the LeNet, saves what the tfmot twin needs, runs OLMP; returns its results."""
    from evidence import evidence

    from keras_prune.export import strip
    from keras_prune.export.summaries import RunSummaries
    from keras_prune.methods.base import RunContext
    from keras_prune.methods.olmp import method as olmp
    from keras_prune.models import get_model
    from keras_prune.training import evaluate_accuracy

    overrides = {
        "olmp_iterations": args.olmp_iterations,
        "olmp_prune_stop": args.olmp_prune_stop,
        "olmp_delta": args.olmp_delta,
        "olmp_crate_bounds": args.olmp_crate_bounds,
        "olmp_constraint": args.olmp_constraint,
        "olmp_constraint_examples": args.olmp_constraint_examples,
        "seed": args.seed,
        **({"pretrain_epochs": 2, "olmp_budget": 200} if args.quick else {}),
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    config, strategy, data, model, dense_accuracy, pretrain_seconds = pretrain(args.model, overrides, workdir)
    out = config.output_dir
    os.makedirs(out, exist_ok=True)
    ctx = RunContext(strategy, config, out, RunSummaries(os.path.join(out, "tensorboard")), log=_log)
    result = olmp.run(model, data, ctx)
    with strategy.scope():
        plain = strip(result.model)
    accuracy = evaluate_accuracy(plain, data.test, strategy)
    total, nonzero = _compression(plain)
    details = result.details
    outcome = {
        "test_accuracy": accuracy,
        "compression": total / nonzero,
        "params": total,
        "nonzero_params": nonzero,
        "search_seconds": result.search_seconds,
        "train_seconds": result.retrain_seconds,
        "iterations": config.olmp_iterations,
        "prune_stop": config.olmp_prune_stop,
        "kept_per_layer": details.get("layers"),
    }
    with strategy.scope():  # the latency reference: the same architecture, dense
        reference = get_model(config.model, data.info.input_shape, data.info.num_classes, seed=config.seed)
    outcome["evidence"] = evidence(reference, plain)
    _log(f"olmp: accuracy {accuracy:.4f}, compression {outcome['compression']:.1f}x")
    settings = {k: v for k, v in config.as_dict().items() if k.startswith("olmp_") or k in (
        "pretrain_epochs", "pretrain_learning_rate", "batch_size", "learning_rate", "weight_decay", "seed")}
    return dense_accuracy, pretrain_seconds, outcome, settings


def run_tfmot_process(args, workdir, seed):
    """Runs the tfmot sweep in a child process (training order drawn from `seed`); returns what it wrote."""
    command = [
        sys.executable, os.path.abspath(__file__), "--tfmot_worker", workdir, "--model", args.model,
        "--sparsities", args.sparsities, "--tfmot_epochs", str(args.tfmot_epochs), "--seed", str(seed),
    ]
    subprocess.run(command, check=True)
    with open(os.path.join(workdir, "tfmot.json")) as f:
        return json.load(f)


def _twin(tf_keras, model_name, input_shape, num_classes):
    """The zoo LeNet rebuilt layer for layer (same names) in tf_keras."""
    layers = tf_keras.layers
    inputs = tf_keras.Input(shape=input_shape, name="input")
    if model_name == "lenet300_100":
        x = layers.Flatten(name="flatten")(inputs)
        for index, units in enumerate((300, 100), start=1):
            x = layers.Dense(units, name=f"ip{index}")(x)
            x = layers.Activation("relu", name=f"relu{index}")(x)
        outputs = layers.Dense(num_classes, name="ip3")(x)
    else:
        x = inputs
        for index, filters in enumerate((20, 50), start=1):
            x = layers.Conv2D(filters, 5, padding="valid", name=f"conv{index}")(x)
            x = layers.MaxPooling2D(2, padding="same", name=f"pool{index}")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(500, name="ip1")(x)
        x = layers.Activation("relu", name="relu1")(x)
        outputs = layers.Dense(num_classes, name="ip2")(x)
    return tf_keras.Model(inputs, outputs, name=model_name)


def _export_tf_keras(tf, model, path):
    """A SavedModel of a tf_keras model with a `serve` function, the endpoint the latency timer calls."""
    module = tf.Module()
    module.model = model
    module.serve = tf.function(
        lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
    )
    tf.saved_model.save(module, path)
    return path


def tfmot_worker(args):
    """The child process: the tf_keras twin, then one tfmot run per sparsity."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    workdir = args.tfmot_worker
    data = np.load(os.path.join(workdir, "data.npz"))
    weights = np.load(os.path.join(workdir, "weights.npz"))
    x_train, y_train, x_test, y_test = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    num_classes = int(max(y_train.max(), y_test.max())) + 1

    def fresh():
        tf_keras.utils.set_random_seed(args.seed or 0)  # the run's seed (files before 2026-11-24: always 0)
        twin = _twin(tf_keras, args.model, x_train.shape[1:], num_classes)
        for layer in twin.layers:
            if layer.weights:
                layer.set_weights([weights[f"{layer.name}:{i}"] for i in range(len(layer.weights))])
        return twin

    def accuracy(model):
        logits = model.predict(x_test, batch_size=500, verbose=0)
        return float(np.mean(np.argmax(logits, axis=-1) == y_test))

    twin = fresh()
    twin_accuracy = accuracy(twin)
    exports = os.path.join(workdir, TFMOT_EXPORTS)
    dense_export = _export_tf_keras(tf, twin, os.path.join(exports, "dense"))
    _log(f"tfmot: tf_keras twin dense accuracy {twin_accuracy:.4f}")
    batch_size = 64
    steps = int(np.ceil(len(x_train) / batch_size)) * args.tfmot_epochs
    sweep = []
    for sparsity in [float(s) for s in args.sparsities.split(",")]:
        start = time.perf_counter()
        end_step = (2 * steps) // 3
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=min(0.5, sparsity),
            final_sparsity=sparsity,
            begin_step=0,
            end_step=end_step,
            frequency=max(1, min(100, end_step // 10)),  # tfmot's 100, unless the run is too short for it
        )
        pruned = tfmot.sparsity.keras.prune_low_magnitude(fresh(), pruning_schedule=schedule)
        pruned.compile(
            optimizer=tf_keras.optimizers.Adam(1e-3),
            loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        pruned.fit(
            x_train, y_train, batch_size=batch_size, epochs=args.tfmot_epochs, verbose=0,
            callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        )
        final = tfmot.sparsity.keras.strip_pruning(pruned)
        total, nonzero = _compression(final)
        point = {
            "sparsity": sparsity,
            "test_accuracy": accuracy(final),
            "compression": total / nonzero,
            "nonzero_params": nonzero,
            "seconds": time.perf_counter() - start,
            "saved_model": _export_tf_keras(tf, final, os.path.join(exports, f"sparsity_{sparsity:g}")),
        }
        _log(f"tfmot: {point}")
        sweep.append(point)
    result = {
        "twin_dense_accuracy": twin_accuracy,
        "input_shape": list(x_train.shape[1:]),
        "dense_saved_model": dense_export,
        "epochs": args.tfmot_epochs,
        "batch_size": batch_size,
        "tfmot_version": getattr(tfmot, "__version__", "unknown"),
        "seed": args.seed or 0,
        "sweep": sweep,
    }
    with open(os.path.join(workdir, "tfmot.json.tmp"), "w") as f:
        json.dump(result, f, indent=1)
    os.replace(os.path.join(workdir, "tfmot.json.tmp"), os.path.join(workdir, "tfmot.json"))


def tfmot_latency(tfmot, point):
    """Serving latency of tfmot's sweep `point` against the dense twin, both exported by the worker."""
    from evidence import TIMING
    from keras_prune.export.latency import measure_saved_model_pair_latency, serving_latency_report
    from keras_prune.export.serving import SERVING_BATCH_SIZES

    dense_times, pruned_times = measure_saved_model_pair_latency(
        (tfmot["dense_saved_model"], point["saved_model"]), tuple(tfmot["input_shape"]),
        batch_sizes=SERVING_BATCH_SIZES, **TIMING,
    )
    return serving_latency_report(dense_times, pruned_times, 1.0)  # unstructured: the dense FLOPs


def compare(dense_accuracy, olmp, tfmot):
    """tfmot's best compression at OLMP's accuracy (capped at the dense one), and the ratio."""
    bar = min(olmp["test_accuracy"], dense_accuracy)
    # float32 (Keras) against exact fractions (tfmot's count): a tie must not fall to rounding.
    eligible = [p for p in tfmot["sweep"] if p["test_accuracy"] >= bar - 1e-6]
    best = max(eligible, key=lambda p: p["compression"]) if eligible else None
    return {
        "comparison_accuracy": bar,
        "tfmot_best": best,
        "olmp_over_tfmot_compression": olmp["compression"] / best["compression"] if best else None,
        "olmp_no_accuracy_loss": olmp["test_accuracy"] >= dense_accuracy - 1e-9,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(RECIPES), default="lenet300_100")
    parser.add_argument("--sparsities", default=DEFAULT_SPARSITIES, help="tfmot final sparsities to sweep")
    parser.add_argument("--tfmot_epochs", type=int, default=20, help="tfmot training epochs per sparsity")
    parser.add_argument("--olmp_iterations", type=int, default=None, help="override the recipe's K")
    parser.add_argument("--olmp_prune_stop", type=int, default=None, help="override the recipe's prune_stop")
    parser.add_argument("--olmp_delta", type=float, default=None, help="override the recipe's delta")
    parser.add_argument("--olmp_crate_bounds", default=None, help="override the recipe's c-rate bounds ('lower,upper')")
    parser.add_argument("--olmp_constraint", choices=("batch", "validation"), default=None,
                        help="override where NCS measures accuracy (the training batch or held-out examples)")
    parser.add_argument("--olmp_constraint_examples", type=int, default=None,
                        help="override the held-out examples per NCS call of --olmp_constraint=validation")
    parser.add_argument("--seed", type=int, default=None, help="override the recipe's seed (init and training "
                        "order; the data split is fixed); a seed other than 0 adds _seed<N> to the results file name")
    parser.add_argument("--tag", default="", help="suffix of the results file, to keep a sized run beside the recipe's")
    parser.add_argument("--quick", action="store_true", help="2 pre-training epochs, a few hundred iterations and "
                        "a 200-evaluation NCS, to check the script")
    parser.add_argument("--tfmot_worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tfmot_worker:
        tfmot_worker(args)
        return
    if args.quick:
        args.olmp_iterations, args.olmp_prune_stop, args.tfmot_epochs = 400, 200, 1
        args.sparsities = "0.9,0.99"
        from evidence import use_quick_timing  # not at the top: the tfmot worker must not import Keras 3

        use_quick_timing()

    from keras_prune.pipeline import _environment

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        dense_accuracy, pretrain_seconds, olmp, settings = run_olmp(args, workdir)
        tfmot = run_tfmot_process(args, workdir, settings["seed"])
        test_images = len(np.load(os.path.join(workdir, "data.npz"))["y_test"])
        if abs(tfmot["twin_dense_accuracy"] - dense_accuracy) > 1.5 / test_images:  # one argmax may tie apart
            raise SystemExit(
                f"the tf_keras twin's dense accuracy {tfmot['twin_dense_accuracy']:.4f} is not the Keras 3 model's "
                f"{dense_accuracy:.4f}: the two sides would not start from the same model"
            )
        comparison = compare(dense_accuracy, olmp, tfmot)
        if comparison["tfmot_best"]:
            comparison["tfmot_best"]["serving_latency"] = tfmot_latency(tfmot, comparison["tfmot_best"])
        tfmot.pop("dense_saved_model")  # the worker's exports go with the work folder
        for point in tfmot["sweep"]:
            point.pop("saved_model")
    summary = {
        "benchmark": "olmp_vs_tfmot",
        "model": args.model,
        "dataset": "mnist5k",
        "dense_test_accuracy": dense_accuracy,
        "pretrain_seconds": pretrain_seconds,
        "olmp": olmp,
        "olmp_settings": settings,
        "tfmot": tfmot,
        **comparison,
        "total_seconds": time.perf_counter() - started,
        **_environment(),
    }
    from common import results_dir, results_name

    folder = results_dir(args.quick)  # a quick check is not a result
    # A run off the recipe's constraint never takes the recipe's file.
    tag = args.tag or ("validation" if args.olmp_constraint == "validation" else "")
    stem = f"olmp_vs_tfmot_{args.model}{'_' + tag if tag else ''}"
    path = os.path.join(folder, results_name(stem, settings["seed"]))
    from keras_prune.export.report_io import write_json

    write_json(path, summary)
    best = summary["tfmot_best"]
    _log(
        f"dense {dense_accuracy:.4f}; olmp {olmp['test_accuracy']:.4f} at {olmp['compression']:.1f}x; "
        f"tfmot best at >= {summary['comparison_accuracy']:.4f}: "
        + (f"{best['compression']:.1f}x ({best['test_accuracy']:.4f})" if best else "none of the sweep")
        + f"; wrote {path} in {summary['total_seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
