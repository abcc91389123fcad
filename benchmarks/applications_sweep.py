"""Sweep: does every keras.applications model survive keras_prune's engine?

For each model Keras ships (built offline, `weights=None`, small inputs), in its own
process so that one crash or hang costs one row:

1. build    the model, BatchNorm parameters random per channel (so that dropped BN channels matter)
            and statistics fitted to its activations, as a trained network's are;
2. analyse  its channel-dependency graph (prunable groups, layers that freeze channels);
3. prune    30% of the channels of every prunable group (surgery removes them);
4. run      the pruned model on a batch;
5. equal    its outputs to the zero-masked reference's (float64, so the check is exact);
6. smaller  its FLOPs and params below the dense model's;
7. fold     BatchNorm folded into the convolutions, as a run's SavedModel is: the same outputs
            (float64: in float32 a deep random net amplifies the changed rounding to 4e-4);
8. saved_model  export as a run does (`export_saved_model`), reload, the folded model's outputs;
9. tflite   conversion, the folded model's outputs from the interpreter.

A model passes when every stage does. Writes benchmarks/results/applications_sweep.json
(one record per model, written after each model, so an interrupted sweep resumes where
it stopped); the README's table is generated from it (benchmarks/update_readme.py).

Run: python benchmarks/applications_sweep.py [--models ResNet50 VGG16] [--fresh]
(an interrupted sweep continues with the models not yet recorded; `--models` checks those again)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

from common import results_dir

PRUNE_FRACTION = 0.3
DEFAULT_SIZE = 32
MIN_SIZE = {  # the smallest input each architecture accepts
    "InceptionV3": 75,
    "InceptionResNetV2": 75,
    "Xception": 71,
    "NASNetMobile": 32,
    "NASNetLarge": 32,
}
STAGES = ("build", "analyse", "prune", "run", "equal", "smaller", "fold", "saved_model", "tflite")


def application_names():
    """Every model constructor keras.applications exports."""
    import keras

    return sorted(n for n in dir(keras.applications) if n[0].isupper() and callable(getattr(keras.applications, n)))


def input_size(name):
    return MIN_SIZE.get(name, DEFAULT_SIZE)


def build(name, *, seed=0):
    """The application at its sweep input size, 10 classes, logits out, BatchNorm statistics
    set as a trained network's would be (`calibrate_batch_norm`)."""
    import keras

    size = input_size(name)
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None
    )
    calibrate_batch_norm(model, seed=seed)
    return model


def calibrate_batch_norm(model, *, seed=0, batch=8):
    """Random per-channel BatchNorm parameters, with statistics that fit the activations.

    gamma and beta are drawn per channel, so that a dropped BN channel matters; each BN's
    mean and variance are those of its input on a random batch (a training call, so with
    dropout and stochastic depth active), scaled per channel by U(0.8, 1.2). Statistics
    drawn independently of the activations (e.g. all in U(0.5, 1.5)) leave activations of
    ~1e3 in deep nets, and sums of such terms that cancel to ~1 in the squeeze-excitation
    gates: EfficientNetV2L's float64 outputs then differ by 3e-5 between
    any two summation orders of the same numbers (the pruned model and its masked reference;
    the error grows from 4e-16 at the stem block by block, with no layer where it jumps
    to O(1) as a wrong channel would). With fitted statistics they agree to 7e-14.
    """
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:  # gamma or beta is None in a BN built with scale=False or center=False (Inception)
        for weight, low, high in ((layer.gamma, 0.5, 1.5), (layer.beta, -0.5, 0.5)):
            if weight is not None:
                weight.assign(rng.uniform(low, high, weight.shape).astype(weight.dtype))
        layer.momentum = 0.0  # the training call below then stores this batch's moments
    model(rng.normal(size=(batch, *model.input_shape[1:])).astype(keras.config.floatx()), training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
        for statistic in (layer.moving_mean, layer.moving_variance):
            statistic.assign(statistic.numpy() * rng.uniform(0.8, 1.2, statistic.shape).astype(statistic.dtype))


def prune_keep(graph, fraction=PRUNE_FRACTION, seed=0):
    """Removes `fraction` of every prunable group's channels, chosen at random."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return {
        g.id: np.sort(rng.choice(g.size, max(1, g.size - int(round(g.size * fraction))), replace=False))
        for g in graph.prunable_groups
    }


def _max_relative_error(got, expected):
    import numpy as np

    got, expected = np.asarray(got, dtype="float64"), np.asarray(expected, dtype="float64")
    return float(np.max(np.abs(got - expected)) / max(float(np.max(np.abs(expected))), 1e-12))


def _masked_reference_error(name):
    """Max relative difference between the pruned model and the zero-masked original, in float64:
    in float32 a different channel count changes the summation order, and a deep random
    network amplifies that rounding."""
    from keras_prune.graph import masked_reference

    return _float64_error(name, lambda model, graph, keep, pruned: masked_reference(model, keep, graph=graph))


def _folding_error(name):
    """Max relative difference between the pruned model and its BatchNorm-folded form, in float64
    (as `_masked_reference_error`)."""
    from keras_prune.export import fold_batch_norms

    return _float64_error(name, lambda model, graph, keep, pruned: fold_batch_norms(pruned))


def _float64_error(name, reference_of):
    """`_max_relative_error` of the pruned model (float64) against `reference_of(model, graph, keep, pruned)`."""
    import gc

    import keras
    import numpy as np

    from keras_prune.graph import analyze, prune_channels

    # The dtype policy, not floatx, decides a new layer's dtypes once any layer exists.
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        model = build(name)
        graph = analyze(model)
        keep = prune_keep(graph)
        x = np.random.default_rng(1).normal(size=(2, *model.input_shape[1:]))
        pruned = prune_channels(model, keep, graph=graph)
        return _max_relative_error(pruned(x), reference_of(model, graph, keep, pruned)(x))
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")
        keras.backend.clear_session()  # the float64 copies (3 GB each for ConvNeXtXLarge) must not outlive this
        gc.collect()


def check(name, workdir, *, log=print):
    """Runs every stage on one application; returns its record (stops at the first failure)."""
    import gc

    import keras
    import numpy as np
    import tensorflow as tf

    from keras_prune.export import export_saved_model, fold_batch_norms
    from keras_prune.graph import analyze, count_flops, count_params, prune_channels

    record = {"model": name, "input_size": input_size(name), "stages": {}, "passed": False}
    stage = "build"
    started = time.perf_counter()

    def done(stage_name, **facts):
        record["stages"][stage_name] = "ok"
        record.update(facts)
        log(f"{name}: {stage_name} ok ({time.perf_counter() - started:.1f} s)")

    try:
        model = build(name)
        done("build", params_dense=int(model.count_params()))
        stage = "analyse"
        graph = analyze(model)
        groups = graph.prunable_groups
        prunable = sum(g.size for g in groups)
        total = sum(g.size for g in graph.groups)
        done(
            "analyse",
            prunable_groups=len(groups),
            prunable_channel_share=round(prunable / max(total, 1), 4),
            frozen_layers=dict(graph.frozen_layers),
        )
        if not groups:
            raise AssertionError("no prunable channel group")
        stage = "prune"
        pruned = prune_channels(model, prune_keep(graph), graph=graph)
        done("prune")
        stage = "run"
        x = np.random.default_rng(1).normal(size=(2, *model.input_shape[1:])).astype("float32")
        out = np.asarray(pruned(x))
        if out.shape != (2, *model.output_shape[1:]) or not np.all(np.isfinite(out)):
            raise AssertionError(f"pruned output has shape {out.shape} or non-finite values")
        done("run")
        stage = "equal"
        equality_error = _masked_reference_error(name)
        if equality_error > 1e-6:
            raise AssertionError(f"pruned vs masked reference: max relative error {equality_error:.2e} > 1e-6")
        done("equal", equality_max_relative_error=equality_error)
        stage = "smaller"
        flops = (count_flops(model).total, count_flops(pruned).total)
        params = (count_params(model).total, count_params(pruned).total)
        if not (flops[1] < flops[0] and params[1] < params[0]):
            raise AssertionError(f"FLOPs {flops[0]} -> {flops[1]}, params {params[0]} -> {params[1]}: not lower")
        done(
            "smaller",
            flops={"dense": flops[0], "pruned": flops[1], "ratio": round(flops[1] / flops[0], 4)},
            params={"dense": params[0], "pruned": params[1], "ratio": round(params[1] / params[0], 4)},
        )
        stage = "fold"
        folding_error = _folding_error(name)
        if folding_error > 1e-6:
            raise AssertionError(f"BatchNorm folding changes the outputs: max relative error {folding_error:.2e} > 1e-6")
        done("fold", fold_max_relative_error=folding_error)
        stage = "saved_model"
        folded = np.asarray(fold_batch_norms(pruned)(x))  # what the SavedModel and TFLite must reproduce
        path = os.path.join(workdir, f"{name}_saved_model")
        export_saved_model(pruned, path)  # the served form a run ships: BatchNorm folded
        loaded = tf.saved_model.load(path)  # kept: its variables live as long as it does
        served = loaded.serve(tf.constant(x))
        error = _max_relative_error(served, folded)
        # 1e-3, as for TFLite: the fold stage checked the function exactly (float64); here, in float32,
        # the SavedModel's graph runs other kernels than eager Keras, and EfficientNetV2B3's deep random
        # net turns that into 1.2e-4. A wrong channel or a misfolded BatchNorm differs by O(0.1).
        if error > 1e-3:
            raise AssertionError(f"reloaded SavedModel differs: max relative error {error:.2e}")
        done("saved_model", saved_model="batch_norm_folded", saved_model_max_relative_error=error)
        # The converter reads the SavedModel from disk; the models in memory go first (ConvNeXtXLarge's
        # dense, pruned and reloaded copies plus the conversion outgrew 24 GiB).
        del model, graph, groups, pruned, loaded, served
        gc.collect()
        stage = "tflite"
        converter = tf.lite.TFLiteConverter.from_saved_model(path)
        interpreter = tf.lite.Interpreter(model_content=converter.convert())
        interpreter.allocate_tensors()
        (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
        interpreter.resize_tensor_input(inp["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        error = _max_relative_error(interpreter.get_tensor(outp["index"]), folded)
        if error > 1e-3:
            raise AssertionError(f"TFLite output differs: max relative error {error:.2e}")
        done("tflite", tflite_max_relative_error=error)
        record["passed"] = True
    except Exception as e:  # a sweep records why a model fails rather than stopping
        record["stages"][stage] = "failed"
        record["failed_stage"] = stage
        record["reason"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
        log(f"{name}: {stage} FAILED: {record['reason']}")
        log(traceback.format_exc(limit=3))
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def _gib():
    """This machine's memory in GiB (rounded), for a message."""
    return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)


def _child(name, output):
    """One model in this process: its record to `output`."""
    from keras_prune.export.report_io import write_json

    with tempfile.TemporaryDirectory() as workdir:
        record = check(name, workdir, log=lambda m: print(f"[sweep] {m}", flush=True))
    write_json(output, record)


def sweep(names, path, *, fresh=False, recheck=False, timeout=1800):
    """Checks each model in a child process; keeps the records in `path` after each one.

    Models already in `path` are skipped (an interrupted sweep resumes) unless `recheck`;
    `fresh` starts a new file.
    """
    from keras_prune.export.report_io import read_json, write_json
    from keras_prune.pipeline import _environment

    summary = read_json(path) if os.path.exists(path) and not fresh else {"models": {}}
    summary.update(_environment(), prune_fraction=PRUNE_FRACTION, stages=list(STAGES),
                   batch_norm="random gamma and beta per channel; statistics of a random batch, x U(0.8, 1.2)")
    for i, name in enumerate(names):
        if name in summary["models"] and not recheck:
            print(f"[sweep] {i + 1}/{len(names)} {name}: already in {path}, skipped", flush=True)
            continue
        print(f"[sweep] {i + 1}/{len(names)} {name}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            output = os.path.join(tmp, "record.json")
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
            started = time.perf_counter()
            try:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", name, "--child_output", output],
                    env=env, timeout=timeout, capture_output=True, text=True,
                )
                sys.stdout.write("".join(l + "\n" for l in proc.stdout.splitlines() if l.startswith("[sweep]")))
                if os.path.exists(output):
                    record = read_json(output)
                else:
                    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                    passed = [l.split(": ")[1].split(" ok")[0] for l in proc.stdout.splitlines() if " ok (" in l]
                    after = f" after the {passed[-1]} stage" if passed else ""
                    reason = (f"killed (SIGKILL: out of memory on this {_gib()} GiB machine?){after}"
                              if proc.returncode == -9 else f"exit code {proc.returncode}{after}: {tail[0][:300]}")
                    record = {"model": name, "passed": False, "failed_stage": "process", "reason": reason}
            except subprocess.TimeoutExpired:
                record = {"model": name, "passed": False, "failed_stage": "process",
                          "reason": f"did not finish in {timeout} s"}
            record.setdefault("seconds", round(time.perf_counter() - started, 1))
        summary["models"][name] = record
        write_json(path, summary)
        print(f"[sweep] {name}: {'pass' if record['passed'] else 'FAIL ' + record['reason']}", flush=True)
    models = summary["models"]
    summary["passed"] = sorted(n for n, r in models.items() if r["passed"])
    summary["failed"] = sorted(n for n, r in models.items() if not r["passed"])
    write_json(path, summary)
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None,
                        help="check these (again, if already recorded); default: every keras.applications model "
                             "not yet in --output")
    parser.add_argument("--output", default=None, help="default: applications_sweep.json in the results folder")
    parser.add_argument("--fresh", action="store_true",
                        help="start a new --output file (drops the models not checked in this run)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per model")
    parser.add_argument("--quick", action="store_true", help="three small models, written to a temporary folder")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child_output", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.child_output)
        return
    names = args.models or application_names()
    if args.quick:
        names = args.models or ["MobileNetV3Small", "ResNet50", "DenseNet121"]
    output = args.output or os.path.join(results_dir(args.quick), "applications_sweep.json")
    started = time.perf_counter()
    summary = sweep(names, output, fresh=args.fresh or args.quick, recheck=bool(args.models), timeout=args.timeout)
    print(
        f"[sweep] {len(summary['passed'])} passed, {len(summary['failed'])} failed "
        f"({', '.join(summary['failed']) or 'none'}); {output} in {time.perf_counter() - started:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
