"""The run: the same shape for every method.

load data -> build or load the model -> pre-train it if untrained -> evaluate the dense
baseline -> run the method (search, then fine-tune / retrain) -> strip -> evaluate the
stripped model (what ships) -> export -> time the exported SavedModels -> report.
Everything trains inside the strategy's scope. Artefacts land in the run folder as they
are made, each written atomically.
"""

import contextlib
import dataclasses
import os
import platform
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_prune.errors import PruneError
from keras_prune.export import compare_serving_latency, export_saved_model, fold_batch_norms, measure_latency, strip
from keras_prune.export.strip import pruning_layers
from keras_prune.export.report_io import atomic_write, read_json, save_keras, write_json
from keras_prune.graph import analyze, count_flops, count_params
from keras_prune.graph.surgery import rebuilt_names
from keras_prune.methods import get_method
from keras_prune.methods.base import MethodResult, RunContext
from keras_prune.run_dir import (
    MODEL_DIGEST, RUN_MARKER, check_input_outside, check_local, check_resume_config, file_digest,
    prepare_output_dir, replace_run,
)
from keras_prune.training import evaluate_accuracy, make_strategy, train_classifier
from keras_prune.training.fit import ElapsedSeconds
from keras_prune.training.strategy import is_chief, task_name
from keras_prune.version import __version__

__all__ = ["RunConfig", "layer_table", "names_a_file", "run"]


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every setting of a run (the command line builds one from its flags)."""

    method: str
    model: str
    output_dir: str
    dataset: str = "mnist5k"
    data_dir: str = None
    width: float = 1.0
    custom_modules: tuple = ()
    target_flops: float = 0.5
    pretrain_epochs: int = 10
    finetune_epochs: int = 5
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 0.01
    pretrain_learning_rate: float = 0.01
    pretrain_schedule: str = "constant"
    pretrain_weight_decay: float = 0.0
    seed: int = 0
    strategy: str = "auto"
    tpu_address: str = None
    resume: bool = False
    overwrite: bool = False
    export: tuple = ("saved_model", "keras")
    latency_repeats: int = 30
    max_batches: int = 0
    prune_residual: bool = False
    round_to: int = 1
    schedule: str = "constant"
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    expansion: float = 1.25
    balance_factor: float = 0.5
    gate_sparsity: float = 0.2
    gate_learning_rate: float = 0.01
    budget_train: bool = False
    slimming_sparsity: float = 1e-4
    olmp_delta: float = 0.08
    olmp_constraint: str = "batch"
    olmp_constraint_examples: int = 256
    olmp_crate_bounds: str = "0,10"
    olmp_iterations: int = 30001
    olmp_prune_stop: int = 15000
    olmp_prune_interval: int = 1000
    olmp_population: int = 10
    olmp_budget: int = 1600
    olmp_sigma: str = "5"
    olmp_legacy_ncs: bool = False
    olmp_lr_policy: str = "inv"
    olmp_tuner: bool = True
    rnp_groups: int = 4
    rnp_order: str = "norm"
    rnp_penalty: float = 0.1
    rnp_alpha: float = None
    rnp_rounds: int = 10
    rnp_decision_steps: int = 100
    rnp_backbone_steps: int = 100
    rnp_warmup_steps: int = 0
    rnp_epsilon_steps: int = 0
    rnp_gamma: float = 1.0
    rnp_target_update: float = 0.01
    rnp_replay: int = 4096
    rnp_q_learning_rate: float = 1e-3
    rnp_backbone_learning_rate: float = 1e-4
    rnp_flops_bias: float = 0.0
    rnp_operating_points: str = "-0.1,0,0.1,0.2,0.5"
    prune_rate: float = 0.2
    recovery_epochs: int = 10
    patience: int = 10
    lstm_epochs: int = 100
    lstm_parents: int = 5
    lstm_children: int = 5
    lstm_hidden_units: int = 64
    lstm_learning_rate: float = 0.001
    lstm_reward: str = "gated"
    lstm_beta: float = 1.0
    lstm_tolerance: float = 0.01
    lstm_penalty: float = 10.0
    lstm_teacher: str = "parent"
    lstm_temperature: float = 4.0
    lstm_distill_weight: float = 0.5
    lstm_criterion: str = "l1"
    verbose: int = None

    def as_dict(self):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


def _defaults():
    """Every `RunConfig` field's default (the required ones excluded)."""
    return {f.name: f.default for f in dataclasses.fields(RunConfig) if f.default is not dataclasses.MISSING}


def _log(message):
    print(f"[keras_prune] {message}", flush=True)


def _build_model(config, info, strategy):
    from keras_prune.models import get_model

    _import_custom_modules(config.custom_modules)  # custom layers of a model file, or a registered criterion
    with strategy.scope():
        if names_a_file(config.model):
            if not os.path.exists(config.model):
                raise PruneError(f"--model={config.model}: no such file.")
            if config.width != 1.0:
                raise PruneError(f"--width={config.width:g} scales the zoo's models, and --model={config.model} is "
                                 "your own file: build and save it at the width you want, and leave --width at 1.")
            try:
                model = keras.models.load_model(config.model, compile=False)
            except Exception as e:  # Keras raises many types for a bad file.
                if "safe_mode" in str(e):  # Python code in the file (a Lambda's, an activation's ...)
                    what = "a Lambda layer of Python code" if "`Lambda` layer" in str(e) else "Python code"
                    raise PruneError(
                        f"--model={config.model} holds {what}, which Keras loads only outside its safe mode, "
                        "and keras-prune loads models in safe mode: replace it with a custom layer or function "
                        "registered with @keras.saving.register_keras_serializable and name its module in "
                        f"--custom_modules (Keras: {str(e).strip().splitlines()[0]})"
                    ) from None
                raise PruneError(
                    f"--model={config.model} could not be loaded as a Keras model (custom layers need "
                    f"--custom_modules naming the module that registers them): {e}"
                ) from None
            _check_own_model(model, config, info)
            return _plain(model, config), False
        return get_model(config.model, info.input_shape, info.num_classes, width=config.width, seed=config.seed), True


def _plain(model, config):
    """A user's model that holds keras_prune layers (a saved intermediate: masks, gates) as the plain
    model it equals, so that every method reads plain Keras layers (slimming would otherwise rank a
    gated BatchNorm by its gamma alone)."""
    held = pruning_layers(model)
    if not held:
        return model
    kinds = ", ".join(sorted({type(layer).__name__ for layer in held}))
    try:
        plain = strip(model)
    except Exception as e:  # e.g. runtime gates, which decide per input; a gate with nothing to fold into
        raise PruneError(
            f"--model={config.model} holds keras_prune layers ({kinds}) that no plain model equals "
            f"({type(e).__name__}: {e}); prune the model they were added to instead."
        ) from None
    left = pruning_layers(plain)
    if left:  # inside a wrapper layer strip does not open (TimeDistributed, Bidirectional, ...)
        raise PruneError(
            f"--model={config.model}: keras_prune layers {', '.join(sorted({l.name for l in left}))} sit inside "
            "wrapper layers that strip does not open; prune the model they were added to instead."
        )
    _log(
        f"--model={config.model} holds {len(held)} keras_prune layer(s) ({kinds}): pruning the plain model "
        "it equals (weight masks applied, zeroed channels removed, gates folded into the layers before them)"
    )
    return plain


_MODEL_FILES = (".keras", ".h5", ".hdf5")


def _import_custom_modules(names):
    """Imports `--custom_modules`, whose import registers the custom layers of the user's model (or a
    channel criterion of `--lstm_criterion`)."""
    import importlib

    if names and os.getcwd() not in sys.path and "" not in sys.path:  # bin/prune's path starts at bin/
        sys.path.append(os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise PruneError(
                f"--custom_modules: cannot import {name!r} ({e}); give a module in the current folder, "
                "on PYTHONPATH or installed."
            ) from None


def _check_model_name(model):
    """Refuses, before anything is written, a --model that is neither a zoo name nor a file."""
    from keras_prune.models import MODEL_NAMES

    if not names_a_file(model) and model not in MODEL_NAMES:
        raise PruneError(
            f"--model={model} is neither a zoo model ({', '.join(MODEL_NAMES)}) nor a model file "
            f"(a path, or a name ending in {', '.join(_MODEL_FILES)})."
        )


def names_a_file(model):
    """Whether `--model` names a file (a path, a saved-model suffix, an existing file) rather than a
    zoo model; a zoo name stays one even beside a file or folder of that name (a run folder, say)."""
    from keras_prune.models import MODEL_NAMES

    if model in MODEL_NAMES:
        return False
    return model.endswith(_MODEL_FILES) or os.path.sep in model or os.path.isfile(model)


def _check_own_model(model, config, info):
    """A user's model must be functional (or Sequential), take the dataset's inputs and give one
    logit per class."""
    from keras_prune.graph.trace import has_graph

    if not has_graph(model):
        raise PruneError(
            f"--model={config.model} is a {type(model).__name__} without a layer graph to read (a subclassed "
            "model, or a Sequential one saved without an input shape): keras-prune reads a model's layers. "
            "Save it as a functional model (keras.Model(inputs, outputs)) or a Sequential one with keras.Input."
        )
    for kind, tensors, need in (("inputs", model.inputs, "one batch of images"),
                                ("outputs", model.outputs, "one output of class logits")):
        if len(tensors) != 1:
            raise PruneError(
                f"--model={config.model} has {len(tensors)} {kind}, but keras-prune trains a classifier with "
                f"{need}: save a model with a single one."
            )
    if tuple(model.input_shape[1:]) != tuple(info.input_shape):
        raise PruneError(
            f"--model={config.model} takes inputs of shape {model.input_shape[1:]}, "
            f"but --dataset={config.dataset} has {info.input_shape}."
        )
    outputs = model.output_shape[-1] if isinstance(model.output_shape, tuple) else None
    if outputs != info.num_classes:
        raise PruneError(
            f"--model={config.model} outputs {model.output_shape[1:]} per example, but --dataset="
            f"{config.dataset} has {info.num_classes} classes: give it a final layer of {info.num_classes} units."
        )
    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax) or getattr(last, "activation", None) is keras.activations.softmax:
        raise PruneError(
            f"--model={config.model} ends in a softmax, but keras-prune trains and distils with logits "
            f"(its losses take from_logits=True). Save the model without the final softmax "
            f"(e.g. layer {last.name!r} with activation=None)."
        )


def _stats(model, data, strategy, repeats=None):
    """Accuracy, FLOPs, params and (with `repeats`) measured batch-1 latency of a plain model."""
    params = count_params(model)
    stats = {
        "accuracy": evaluate_accuracy(model, data.test, strategy),
        "flops": count_flops(model).total,
        "params": params.total,
        "nonzero_params": params.nonzero,
    }
    if repeats is not None:
        stats["latency_ms"] = _latency(model, repeats)
    return stats


def _latency(model, repeats):
    """Median batch-1 in-process latency (ms) of `model` as served: BatchNorm folded."""
    return measure_latency(fold_batch_norms(model), repeats=repeats)["median_ms"]


_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_COMPUTE = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    *_DEPTHWISE,
    keras.layers.Dense,
)


def _compute_calls(trace):
    """`{id(layer): [its calls]}` of every Conv and Dense layer of `trace`, in trace order."""
    paths = {}
    for call in trace.calls:
        if isinstance(call.op, _COMPUTE):
            paths.setdefault(id(call.op), []).append(call)
    return paths


def _width(layer):
    if isinstance(layer, _DEPTHWISE):
        return int(layer.kernel.shape[-2] * layer.kernel.shape[-1])
    return int(getattr(layer, "filters", None) or layer.units)


def _nonzero(layer):
    total = 0
    masks = getattr(layer, "prune_masks", {})
    values = {w.name: np.asarray(w.numpy()) for w in layer.weights}
    for name, value in values.items():
        if name in masks.values():
            continue
        if name in masks:
            value = value * values[masks[name]]
        total += int(np.count_nonzero(value))
    return total


def layer_table(dense, pruned):
    """Per compute layer: channels, FLOPs and weight sparsity before and after.

    `pruned` is a rebuild of `dense` (flat, every layer named as `rebuilt_names` says): a
    layer of a nested model is found again under the name the rebuild gave it, which is
    also the name each row shows.
    """
    dense_graph, pruned_graph = analyze(dense), analyze(pruned)
    dense_trace, pruned_trace = dense_graph.trace, pruned_graph.trace
    flops_before = count_flops(dense, graph=dense_graph).by_layer
    flops_after = count_flops(pruned, graph=pruned_graph).by_layer
    names = rebuilt_names(dense_trace)
    after = {calls[0].op.name: calls for calls in _compute_calls(pruned_trace).values()}
    rows = []
    for calls in _compute_calls(dense_trace).values():
        layer, name = calls[0].op, names[calls[0].path]
        new_calls = after.get(name)
        new = new_calls[0].op if new_calls else None
        params_before = sum(int(np.prod(w.shape)) for w in layer.weights if "mask" not in w.name)
        rows.append(
            {
                "name": name,
                "channels_before": _width(layer),
                "channels_after": _width(new) if new is not None else 0,
                "flops_before": int(sum(flops_before.get(p, 0) for p in {c.path for c in calls})),
                "flops_after": int(sum(flops_after.get(p, 0) for p in {c.path for c in new_calls or []})),
                "sparsity": round(1.0 - (_nonzero(new) if new is not None else 0) / max(params_before, 1), 6),
            }
        )
    return rows


EXPORT_PATHS = {"keras": "model.keras", "saved_model": "saved_model", "tflite": "model.tflite"}


def _drop_unrequested_exports(output_dir, formats):
    """Removes the exports of an earlier process of this run that `--export` no longer asks for
    (a resume with other formats): report.json lists what the folder holds, and nothing else."""
    for fmt, name in EXPORT_PATHS.items():
        path = os.path.join(output_dir, name)
        if fmt not in formats and os.path.lexists(path):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            _log(f"resume: removed {name}, which --export no longer asks for")


def _export(model, output_dir, formats):
    """Writes the plain pruned model: model.keras, saved_model/ (for serving: BatchNorm folded
    into the convolutions, as converters do), optionally model.tflite."""
    written = {}
    if "keras" in formats:
        written["keras"] = save_keras(model, os.path.join(output_dir, EXPORT_PATHS["keras"]))
    if "saved_model" in formats:
        written["saved_model"] = export_saved_model(model, os.path.join(output_dir, EXPORT_PATHS["saved_model"]))
    if "tflite" in formats:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        path = os.path.join(output_dir, EXPORT_PATHS["tflite"])
        atomic_write(path, converter.convert(), mode="wb")
        written["tflite"] = path
    return written


def _environment():
    return {
        "versions": {
            "keras_prune": __version__,
            "keras_prune_revision": _revision(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            # What this process may use (benchmarks pin themselves with taskset).
            "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            **_cpu(),
        },
    }


def _revision():
    """The commit of the keras_prune source (`git describe --always --dirty`, tags left out), or None
    outside a git checkout: results made by different code must be told apart, and the version
    number moves rarely."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, ".git")):  # installed: not this checkout's history
        return None
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--exclude=*"], cwd=root, capture_output=True, text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if described.returncode != 0:
        return None
    return described.stdout.strip() or None


def _cpu(path="/proc/cpuinfo"):
    """The CPU's model name and vector extensions (Linux): oneDNN picks its kernels by them, so two
    machines can train the same seed to different models; a result records which it ran on."""
    try:
        with open(path) as f:
            fields = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
    except OSError:
        return {}
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    extensions = sorted(flag for flag in fields.get("flags", "").split() if flag.startswith(("avx", "amx", "sse4")))
    return {"cpu_model": fields.get("model name", ""), "cpu_extensions": extensions}


def run(config, *, flags_text=None):
    """Runs `config` end to end and returns the report dict (also in report.json).

    A run that fails before it writes anything leaves no empty folder behind, if it made it.
    """
    made = []  # the run folder, if this process made it
    try:
        return _run(config, flags_text=flags_text, made=made)
    except BaseException:
        for folder in made:
            try:
                if not os.listdir(folder):
                    os.rmdir(folder)
            except OSError:  # gone, or not ours to remove: the run's own error matters
                pass
        raise


def _run(config, *, flags_text, made):
    from keras_prune.data import load_dataset
    from keras_prune.export.plots import plot_layer_channels
    from keras_prune.export.report_md import write_markdown
    from keras_prune.export.summaries import RunSummaries

    started = time.perf_counter()
    method = get_method(config.method)
    _check_model_name(config.model)
    strategy = make_strategy(config.strategy, tpu_address=config.tpu_address, log=_log)  # first TF call (multi_worker)
    keras.utils.set_random_seed(config.seed)
    _log(f"strategy: {type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s)")
    # Every worker runs the whole pipeline (saving included: it may read synchronised
    # variables collectively), but only the chief writes the run folder; each other worker
    # keeps its own beside it, for --resume, and removes it once the run is done.
    chief = is_chief(strategy)
    check_local(config.output_dir)  # before a worker's folder name is made from it
    if names_a_file(config.model):
        check_input_outside(config.output_dir, config.model)
    run_folder = config.output_dir if chief else f"{os.path.abspath(config.output_dir)}.{task_name(strategy)}"
    existed = os.path.exists(run_folder)
    output_dir = prepare_output_dir(run_folder, resume=config.resume, overwrite=config.overwrite)
    if not existed:
        made.append(output_dir)
    settings, defaults = config.as_dict(), _defaults()
    if names_a_file(config.model) and os.path.exists(config.model):  # (a missing one: _build_model says so)
        # An own file: resuming from another model at that path would mix two runs; old records: trusted.
        settings[MODEL_DIGEST] = defaults[MODEL_DIGEST] = file_digest(config.model)
    if config.resume:  # a changed setting is named now, before the data and the model are loaded
        check_resume_config(output_dir, settings, resume=True, defaults=defaults)
    data = load_dataset(config.dataset, data_dir=config.data_dir, batch_size=config.batch_size, seed=config.seed)
    if config.max_batches:
        data = data.limited(config.max_batches, config.batch_size)
        _log(f"data: at most {config.max_batches} train and validation batches per epoch (--max_batches)")
    _log(f"data: {data.info.describe()}")
    model, untrained = _build_model(config, data.info, strategy)
    if hasattr(method, "preflight"):  # e.g. an impossible budget fails now, not after pre-training
        with strategy.scope():
            method.preflight(model, config)
    # The folder becomes this run's only once its data, model and budget are known to be usable:
    # a mistyped command leaves it free for the corrected one, and an --overwrite leaves the old run.
    if config.overwrite:
        replace_run(output_dir)
    if not config.resume:  # a resumed run keeps the flags it started with (checked above)
        check_resume_config(output_dir, settings, resume=False, defaults=defaults)
        atomic_write(os.path.join(output_dir, RUN_MARKER), flags_text or _config_text(config))
    verbose = config.verbose if config.verbose is not None else (1 if sys.stdout.isatty() else 2)
    summaries = RunSummaries(os.path.join(output_dir, "tensorboard"))

    def callbacks(phase):
        # BackupAndRestore: a fixed-structure training phase killed part-way resumes from its
        # last finished epoch (weights, optimizer state, epoch). The backup outlives the phase
        # until what the phase made is saved (`phase_done`): a kill in between resumes at the
        # last epoch, with nothing left to train. double_checkpoint keeps the previous backup
        # if a write is cut.
        if phase in phases_begun:  # a second training of that name would be restored from the first's backup
            raise ValueError(f"Training phase {phase!r} asked for its callbacks twice in one run; give each "
                             "training phase a name of its own.")
        phases_begun.add(phase)
        backup = os.path.join(output_dir, BACKUP_DIR, phase)
        epoch = _backup_epoch(backup)
        if epoch is not None:
            _log(f"resume: {phase} restores its backup after epoch {epoch} ({backup})")
        return [
            keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard", phase)),
            keras.callbacks.BackupAndRestore(backup, double_checkpoint=True, delete_checkpoint=False),
            ElapsedSeconds(_phase_seconds_path(output_dir, phase), phase_seconds(phase)),
        ]

    def phase_seconds(phase):
        """Seconds the phase's finished epochs took in the interrupted processes (0 in a new run)."""
        try:
            return float(read_json(_phase_seconds_path(output_dir, phase))["seconds"])
        except (OSError, ValueError, KeyError):
            return 0.0

    def phase_done(phase):
        shutil.rmtree(os.path.join(output_dir, BACKUP_DIR, phase), ignore_errors=True)
        with contextlib.suppress(OSError):
            os.remove(_phase_seconds_path(output_dir, phase))

    phases_begun = set()

    baseline_path = os.path.join(output_dir, "baseline.keras")
    if config.resume and os.path.exists(baseline_path):
        _log(f"resume: loading the trained baseline from {baseline_path}")
        with strategy.scope():
            model = keras.models.load_model(baseline_path, compile=False)
    elif untrained:
        _log(f"pretrain: {config.pretrain_epochs} epoch(s) of the dense model")
        train_classifier(
            model,
            data,
            strategy,
            epochs=config.pretrain_epochs,
            learning_rate=config.pretrain_learning_rate,
            schedule=config.pretrain_schedule,
            weight_decay=config.pretrain_weight_decay or None,
            phase="pretrain",
            callbacks=callbacks("pretrain"),
            verbose=verbose,
            learning_rate_flag="--pretrain_learning_rate",
        )
        save_keras(model, baseline_path)
        phase_done("pretrain")
    baseline = _stats(model, data, strategy)  # timed later, beside the pruned model
    _log(f"baseline: accuracy {baseline['accuracy']:.4f}, {baseline['flops'] / 1e6:.2f} M MACs")

    ctx = RunContext(strategy, config, output_dir, summaries, log=_log, callbacks=callbacks, phase_done=phase_done,
                     phase_seconds=phase_seconds)
    result = _finished_result(output_dir, strategy) if config.resume else None
    if result is None:
        result = method.run(model, data, ctx)
        with strategy.scope():
            plain = strip(result.model)
        if result.stats is None and result.export is None:
            _save_result(output_dir, plain, result)
    else:
        _log(f"resume: {config.method} had finished; its result is loaded from {os.path.join(output_dir, RESULT_DIR)}")
        plain = result.model
    shutil.rmtree(os.path.join(output_dir, BACKUP_DIR), ignore_errors=True)  # what the phases made is saved
    # The dense model's batch-1 time again, right before the pruned one's: timed before the
    # method ran (minutes or hours ago), the machine's speed could have changed in between.
    baseline["latency_ms"] = _latency(model, config.latency_repeats)
    if result.stats is not None:
        pruned = result.stats(data, strategy, config.latency_repeats)
    else:
        pruned = _stats(plain, data, strategy, config.latency_repeats)
    _log(
        f"pruned: accuracy {pruned['accuracy']:.4f}, {pruned['flops'] / 1e6:.2f} M MACs "
        f"({pruned['flops'] / baseline['flops']:.4f} of the dense model)"
    )
    _drop_unrequested_exports(output_dir, config.export)
    if result.export is not None:
        exported = result.export(output_dir, config.export)
    else:
        exported = _export(plain, output_dir, config.export)
    serving = None
    if "saved_model" in exported and chief:
        flops_ratio = pruned["flops"] / baseline["flops"]
        serving = compare_serving_latency(model, exported["saved_model"], flops_ratio, repeats=config.latency_repeats,
                                          images=data.test_images())  # real inputs: rnp's cost depends on them
        _log("serving latency (SavedModel, dense -> pruned): " + ", ".join(
            f"{k.replace('_', ' ')} {v['dense_ms']:.2f} -> {v['pruned_ms']:.2f} ms" for k, v in serving.items()))

    report = {
        "method": config.method,
        "model": config.model,
        "dataset": config.dataset,
        "data": data.info.inputs(),
        "config": config.as_dict(),
        "baseline": baseline,
        "pruned": pruned,
        "flops_ratio": pruned["flops"] / baseline["flops"],
        "serving_latency": serving,
        "target_flops": config.target_flops,
        "search_seconds": result.search_seconds,
        "retrain_seconds": result.retrain_seconds,
        "total_seconds": time.perf_counter() - started,
        "layers": result.layers(layer_table(model, plain)) if result.layers else layer_table(model, plain),
        "method_details": result.details,
        "exported": {k: os.path.relpath(v, output_dir) for k, v in exported.items()},
        **_environment(),
    }
    write_json(os.path.join(output_dir, "report.json"), report)  # first: the rest is drawn from it
    summaries.close()
    _write_summaries(os.path.join(output_dir, "tensorboard", "report"), report)
    if report["layers"]:
        plot_layer_channels(report, os.path.join(output_dir, "plots", "layer_channels.png"))
    else:
        _log("report: no Conv or Dense layer to tabulate, so no plots/layer_channels.png")
    write_markdown(report, os.path.join(output_dir, "report.md"))
    if not chief:
        shutil.rmtree(output_dir, ignore_errors=True)
        _log(f"done in {report['total_seconds']:.1f} s ({task_name(strategy)}; the chief wrote the run folder)")
        return report
    _log(f"done in {report['total_seconds']:.1f} s: {os.path.join(output_dir, 'report.md')}")
    return report


BACKUP_DIR = "backup"
"""The training phases' BackupAndRestore folders, one per phase, kept until the phase's result is saved."""


def _phase_seconds_path(output_dir, phase):
    return os.path.join(output_dir, BACKUP_DIR, f"{phase}.seconds.json")


def _backup_epoch(folder):
    """The last finished epoch a phase's backup holds, or None if there is none."""
    try:
        return int(read_json(os.path.join(folder, "training_metadata.json"))["epoch"])
    except (OSError, ValueError, KeyError):
        return None


RESULT_DIR = "result"
"""The method's stripped model and report entries, so the report can be rebuilt without rerunning it."""


def _save_result(output_dir, plain, result):
    """Keeps what `method.run` returned (the model last, as the marker of a complete result)."""
    folder = os.path.join(output_dir, RESULT_DIR)
    write_json(os.path.join(folder, "result.json"), {
        "search_seconds": result.search_seconds,
        "retrain_seconds": result.retrain_seconds,
        "details": result.details,
        "reference_flops": result.reference_flops,
    })
    save_keras(plain, os.path.join(folder, "model.keras"))


def _finished_result(output_dir, strategy):
    """The `MethodResult` a finished method left in the run folder, or None."""
    folder = os.path.join(output_dir, RESULT_DIR)
    if not os.path.exists(os.path.join(folder, "model.keras")):
        return None
    saved = read_json(os.path.join(folder, "result.json"))
    with strategy.scope():
        model = keras.models.load_model(os.path.join(folder, "model.keras"), compile=False)
    return MethodResult(model=model, **saved)


def _write_summaries(folder, report):
    """The report's numbers, structure table and HParams as TensorBoard's `report` run. The folder is
    written whole each time: a resumed run's report replaces the earlier one instead of adding a
    second copy at the same steps."""
    from keras_prune.export.report_md import render_markdown
    from keras_prune.export.summaries import RunSummaries

    shutil.rmtree(folder, ignore_errors=True)
    with RunSummaries(folder) as summaries:
        for step, key in enumerate(("baseline", "pruned")):
            stats = report[key]
            summaries.scalars(
                step,
                flops=stats["flops"],
                params=stats["params"],
                nonzero_params=stats["nonzero_params"],
                accuracy=stats["accuracy"],
                latency_ms=stats["latency_ms"],
            )
        summaries.layer_sparsity(1, {row["name"]: row["sparsity"] for row in report["layers"]})
        summaries.text("structure", render_markdown(report))
        summaries.hparams(
            report["config"],
            {"accuracy": report["pruned"]["accuracy"], "flops_ratio": report["flops_ratio"]},
        )


def _config_text(config):
    """`config` as the flagfile `bin/prune` writes (flags.txt), for a run started from the Python
    API: `bin/prune --flagfile=<run>/flags.txt --resume` must read it back."""
    from absl import flags as absl_flags

    from keras_prune.cli.flags import define_flags
    from keras_prune.cli.main import RUN_CONTROL_FLAGS

    flag_values = absl_flags.FlagValues()
    define_flags(flag_values)
    lines = []
    for name, value in config.as_dict().items():
        if name not in flag_values or name in RUN_CONTROL_FLAGS or value is None:
            continue  # not a flag (verbose), about this invocation only, or unset
        flag = flag_values[name]
        flag.value = list(value) if isinstance(value, (list, tuple)) else value
        lines.extend(line for line in flag.serialize().splitlines() if line)
    return "".join(f"{line}\n" for line in lines)
