"""Command-line flags, defined in one function; importing this module defines nothing."""

import os

from absl import flags

from keras_prune.methods import METHODS
from keras_prune.training.fit import SCHEDULES
from keras_prune.training.strategy import STRATEGIES

__all__ = ["define_flags", "config_from_flags", "flag_owner"]

_OWN_FLAGS = {
    "scratch": ("expansion", "balance_factor", "gate_sparsity", "gate_learning_rate"),
    "slimming": ("slimming_sparsity",),
    "lstm": ("prune_rate", "recovery_epochs", "patience"),
}
_OWN_PREFIXES = ("lstm", "olmp", "rnp")


def flag_owner(name):
    """The method that alone reads flag `name` (its help starts with "<method>: "), or None."""
    for method, names in _OWN_FLAGS.items():
        if name in names:
            return method
    prefix = name.split("_", 1)[0]
    return prefix if prefix in _OWN_PREFIXES and "_" in name else None


def define_flags(flag_values=None):
    """Defines every keras-prune flag (on absl's global FLAGS unless `flag_values` is given)."""
    fv = flag_values if flag_values is not None else flags.FLAGS
    _define(flags.DEFINE_enum, fv, "method", None, list(METHODS), "Pruning method.")
    _define(flags.DEFINE_string, fv, 
        "model", None, "A zoo name (see keras_prune.models.MODEL_NAMES) or a path to your own .keras model."
    )
    _define(flags.DEFINE_list, fv, "custom_modules", [],
            "Python modules to import before loading your own --model: the ones that define its custom layers "
            "(registered with @keras.saving.register_keras_serializable).")
    _define(flags.DEFINE_float, fv, "width", 1.0,
            "Zoo models: multiplies every channel and hidden-unit count (the benchmarks' resnet20 x0.5 is "
            "--width=0.5); your own --model keeps its widths.")
    _define(flags.DEFINE_string, fv, "dataset", "mnist5k", "Embedded (mnist5k, digits) or a tfds name prepared in --data_dir.")
    _define(flags.DEFINE_string, fv, "data_dir", None,
            "tfds data directory (nothing is downloaded); unset: $TFDS_DATA_DIR, else ~/tensorflow_datasets.")
    _define(flags.DEFINE_string, fv, "output_dir", None, "Run folder: report, plots, exported model, TensorBoard logs.")
    _define(flags.DEFINE_float, fv, "target_flops", 0.5, "Fraction of the original FLOPs to keep, in (0, 1].")
    _define(flags.DEFINE_integer, fv, "pretrain_epochs", 10, "Epochs to train an untrained (zoo) model before pruning.")
    _define(flags.DEFINE_float, fv, "pretrain_learning_rate", 0.01,
            "SGD learning rate of the trainings from scratch: pre-training and slimming's sparsity training.")
    _define(flags.DEFINE_enum, fv,
            "pretrain_schedule", "constant", list(SCHEDULES),
            "Learning-rate schedule of the trainings from scratch: pre-training and slimming's sparsity "
            "training (the papers' baselines decay theirs: step).")
    _define(flags.DEFINE_float, fv, "pretrain_weight_decay", 0.0,
            "Weight decay (L2, as --weight_decay) of the trainings from scratch: pre-training and slimming's sparsity "
            "training (0: none).")
    _define(flags.DEFINE_integer, fv, "finetune_epochs", 5, "Epochs of fine-tuning after pruning.")
    _define(flags.DEFINE_integer, fv, 
        "epochs", 10, "Epochs of the method's search phase: scratch's gate learning, slimming's sparsity training."
    )
    _define(flags.DEFINE_integer, fv, "batch_size", 128, "Global batch size (split across replicas).")
    _define(flags.DEFINE_float, fv, "learning_rate", 0.01, "Learning rate of fine-tuning / retraining (olmp: base rate of its masked SGD).")
    _define(flags.DEFINE_integer, fv, "seed", 0, "Random seed (data order, initialisation, search).")
    _define(flags.DEFINE_enum, fv, "strategy", "auto", list(STRATEGIES), "tf.distribute strategy.")
    _define(flags.DEFINE_string, fv, "tpu_address", None, "TPU name or grpc:// address for --strategy=tpu.")
    _define(flags.DEFINE_bool, fv, "resume", False, "Continue the run in --output_dir.")
    _define(flags.DEFINE_bool, fv, "overwrite", False, "Replace the run in --output_dir.")
    _define(flags.DEFINE_multi_enum, fv, 
        "export", ["saved_model", "keras"], ["saved_model", "keras", "tflite"], "Export formats (repeatable)."
    )
    _define(flags.DEFINE_integer, fv, "latency_repeats", 30,
            "Timed inference calls per latency measurement: in-process at batch 1, and the exported "
            "SavedModel (dense and pruned) at batch 1 and 32, at most 10 s each.")
    _define(flags.DEFINE_integer, fv, "max_batches", 0,
            "Cap on the train and validation batches per epoch (0: none); for smoke runs of large models.")
    _positive(fv, "max_batches", lambda v: v >= 0, "--max_batches must be >= 0 (0: no cap).")
    _define(flags.DEFINE_bool, fv, 
        "prune_residual", False, "l1, lstm, scratch, slimming: also prune channel groups tied by residual additions (scratch: and "
        "the linear block outputs no addition ties)."
    )
    _define(flags.DEFINE_integer, fv, "round_to", 1,
            "l1, lstm, scratch, slimming: keep a multiple of this many channels in every pruned group (or the "
            "whole group; scratch also rounds its expanded widths); 8 suits CPU kernels, which run counts off a "
            "multiple of 8 slowly. Raises the smallest reachable --target_flops. 1: any count.")
    _positive(fv, "round_to", lambda v: v >= 1, "--round_to must be >= 1 (1: any channel count).")
    _define(flags.DEFINE_enum, fv, 
        "schedule", "constant", list(SCHEDULES), "Learning-rate schedule of fine-tuning / retraining (step: /10 at 50%, 75%)."
    )
    _define(flags.DEFINE_float, fv, "label_smoothing", 0.0, "Label smoothing of fine-tuning / retraining.")
    _define(flags.DEFINE_float, fv, "weight_decay", 0.0, "Weight decay of fine-tuning / retraining and of olmp's masked "
            "SGD: L2 added to the gradient before momentum, as the papers' PyTorch and Caffe code (0: none).")
    _define(flags.DEFINE_float, fv, "expansion", 1.25, "scratch: width multiplier of the network the gates are learned on.")
    _define(flags.DEFINE_float, fv, "balance_factor", 0.5, "scratch: lambda of the (mean |gate| - r)^2 regulariser.")
    _define(flags.DEFINE_float, fv, "gate_sparsity", 0.2, "scratch: r, the target mean gate value.")
    _define(flags.DEFINE_float, fv, "gate_learning_rate", 0.01, "scratch: Adam learning rate of gate learning.")
    _define(flags.DEFINE_bool, fv, 
        "budget_train", False, "scratch: train the pruned net finetune_epochs / target_flops epochs (Scratch-B)."
    )
    _define(flags.DEFINE_float, fv, "slimming_sparsity", 1e-4, "slimming: L1 coefficient on BatchNorm scales.")
    _define_olmp(fv)
    _define_rnp(fv)
    _define_lstm(fv)
    _define(flags.DEFINE_bool, fv, "traceback", False, "Show the full traceback of an error.")
    flags.mark_flags_as_required(["method", "model", "output_dir"], flag_values=fv)
    flags.register_validator(
        "target_flops",
        lambda v: v is not None and 0.0 < v <= 1.0,
        message="--target_flops must be in (0, 1]: the fraction of FLOPs to keep.",
        flag_values=fv,
    )
    _positive(fv, "seed", lambda v: 0 <= v < 2**32, "--seed must be in [0, 2**32 - 1] (NumPy's seed range).")
    for name in ("batch_size", "latency_repeats"):
        flags.register_validator(
            name, lambda v: v is not None and v > 0, message=f"--{name} must be > 0.", flag_values=fv
        )
    _positive(fv, "expansion", lambda v: 1.0 <= v <= 2.0, "--expansion must be in [1, 2].")
    _positive(fv, "width", lambda v: 0.0 < v <= 4.0, "--width must be in (0, 4].")
    _positive(fv, "gate_sparsity", lambda v: 0.0 < v < 1.0, "--gate_sparsity (r) must be in (0, 1).")
    _positive(fv, "label_smoothing", lambda v: 0.0 <= v < 1.0, "--label_smoothing must be in [0, 1).")
    for name in ("balance_factor", "weight_decay", "pretrain_weight_decay", "slimming_sparsity"):
        _positive(fv, name, lambda v: v >= 0.0, f"--{name} must be >= 0.")
    for name in ("gate_learning_rate", "learning_rate", "pretrain_learning_rate"):
        _positive(fv, name, lambda v: v > 0.0, f"--{name} must be > 0.")
    for name in ("pretrain_epochs", "finetune_epochs", "epochs"):
        flags.register_validator(
            name, lambda v: v is not None and v >= 0, message=f"--{name} must be >= 0.", flag_values=fv
        )


def _define_olmp(fv):
    """OLMP's flags (defaults: the paper's LeNet-300-100 run) and their validators."""
    from keras_prune.methods.olmp.settings import CONSTRAINTS, parse_bounds, parse_lr_policy, parse_schedule

    _define(flags.DEFINE_float, fv, "olmp_delta", 0.08,
            "olmp: accuracy an NCS candidate may lose against the current model, in (0, 1) (on the training "
            "batch, or on held-out examples with --olmp_constraint=validation).")
    _define(flags.DEFINE_enum, fv, "olmp_constraint", "batch", list(CONSTRAINTS),
            "olmp: where NCS measures that accuracy: the current training batch (the paper) or held-out "
            "examples of the validation split.")
    _define(flags.DEFINE_integer, fv, "olmp_constraint_examples", 256,
            "olmp: with --olmp_constraint=validation, the held-out examples each NCS call measures.")
    _define(flags.DEFINE_string, fv, "olmp_crate_bounds", "0,10", "olmp: 'lower,upper' bounds of every c-rate.")
    _define(flags.DEFINE_integer, fv, "olmp_iterations", 30001, "olmp: SGD iterations in all (K).")
    _define(flags.DEFINE_integer, fv, "olmp_prune_stop", 15000,
            "olmp: iteration from which masks are frozen (then retraining).")
    _define(flags.DEFINE_integer, fv, "olmp_prune_interval", 1000, "olmp: iterations between NCS calls.")
    _define(flags.DEFINE_integer, fv, "olmp_population", 10, "olmp: NCS population size N.")
    _define(flags.DEFINE_integer, fv, "olmp_budget", 1600, "olmp: NCS evaluations per call (Tmax).")
    _define(flags.DEFINE_string, fv, "olmp_sigma", "5",
            "olmp: NCS initial step size, or a schedule 'value@iteration,...' (e.g. '5@0,0.5@10000').")
    _define(flags.DEFINE_bool, fv, "olmp_legacy_ncs", False,
            "olmp: reproduce the released OLMP NCS, whose population never moves (docs/PAPERS.md 2.6).")
    _define(flags.DEFINE_string, fv, "olmp_lr_policy", "inv",
            "olmp: learning-rate policy: inv (Caffe, gamma 1e-4, power 0.75), step@N (x0.1 every N) or fixed.")
    _define(flags.DEFINE_bool, fv, "olmp_tuner", True,
            "olmp: run each NCS call as a Keras Tuner search in <output_dir>/olmp/tuner (else bare NCS).")
    _positive(fv, "olmp_delta", lambda v: 0.0 < v < 1.0,
              "--olmp_delta must be in (0, 1): the accuracy a candidate may lose.")
    _parses(fv, "olmp_crate_bounds", parse_bounds)
    _parses(fv, "olmp_sigma", parse_schedule)
    _parses(fv, "olmp_lr_policy", parse_lr_policy)
    _positive(fv, "olmp_constraint_examples", lambda v: v >= 1, "--olmp_constraint_examples must be >= 1.")
    _positive(fv, "olmp_iterations", lambda v: v >= 1, "--olmp_iterations must be >= 1.")
    _positive(fv, "olmp_prune_stop", lambda v: v >= 0, "--olmp_prune_stop must be >= 0.")
    _positive(fv, "olmp_prune_interval", lambda v: v >= 1, "--olmp_prune_interval must be >= 1.")
    _positive(fv, "olmp_population", lambda v: v >= 2, "--olmp_population must be >= 2.")
    flags.register_multi_flags_validator(
        ["olmp_prune_stop", "olmp_iterations"],
        lambda v: v["olmp_prune_stop"] <= v["olmp_iterations"],
        message="--olmp_prune_stop must be <= --olmp_iterations.",
        flag_values=fv,
    )
    flags.register_multi_flags_validator(
        ["olmp_budget", "olmp_population"],
        lambda v: v["olmp_budget"] >= v["olmp_population"] + 1,
        message="--olmp_budget must be >= --olmp_population + 1 (the start point and one generation).",
        flag_values=fv,
    )


def _define_lstm(fv):
    """Where to Prune's flags (defaults: the paper's MNIST settings, docs/PAPERS.md 4) and their validators."""
    from keras_prune.methods.lstm.settings import CRITERIA, REWARDS, TEACHERS

    _define(flags.DEFINE_float, fv, "prune_rate", 0.2,
            "lstm: fraction of a layer's current channels one 'prune' decision removes, in (0, 1).")
    _define(flags.DEFINE_integer, fv, "recovery_epochs", 10,
            "lstm: teacher-student recovery epochs of every child (paper: 30 CIFAR, 10 MNIST).")
    _define(flags.DEFINE_integer, fv, "patience", 10, "lstm: stop after this many controller epochs without a better structure.")
    _define(flags.DEFINE_integer, fv, "lstm_epochs", 100,
            "lstm: controller epochs at most (the paper stops by --patience or --target_flops only).")
    _define(flags.DEFINE_integer, fv, "lstm_parents", 5, "lstm: best structures fed to the controller each epoch.")
    _define(flags.DEFINE_integer, fv, "lstm_children", 5, "lstm: decision sequences sampled per parent per epoch.")
    _define(flags.DEFINE_integer, fv, "lstm_hidden_units", 64, "lstm: width of the controller's LSTM.")
    _define(flags.DEFINE_float, fv, "lstm_learning_rate", 0.001, "lstm: Adam learning rate of the controller.")
    _define(flags.DEFINE_enum, fv, "lstm_reward", "gated", list(REWARDS),
            "lstm: gated = FLOPs removed - penalty * (accuracy lost beyond tolerance); "
            "linear = accuracy / reference - beta * FLOPs ratio; "
            "target = FLOPs removed down to --target_flops + beta * (accuracy / reference - 1) - the gated penalty "
            "(searches on past the target for the most accurate structure at it; stops by --patience or --lstm_epochs).")
    _define(flags.DEFINE_float, fv, "lstm_beta", 1.0,
            "lstm: FLOPs weight of the linear reward; accuracy weight of the target reward.")
    _define(flags.DEFINE_float, fv, "lstm_tolerance", 0.01,
            "lstm: validation accuracy the gated and target rewards let a child lose.")
    _define(flags.DEFINE_float, fv, "lstm_penalty", 10.0,
            "lstm: gated and target reward lost per unit of accuracy beyond the tolerance.")
    _define(flags.DEFINE_enum, fv, "lstm_teacher", "parent", list(TEACHERS),
            "lstm: teacher of a child's recovery: the network it was pruned from, or the pre-trained one.")
    _define(flags.DEFINE_float, fv, "lstm_temperature", 4.0, "lstm: distillation temperature.")
    _define(flags.DEFINE_float, fv, "lstm_distill_weight", 0.5,
            "lstm: weight of the distillation term in recovery (the rest: cross-entropy), in [0, 1].")
    _define(flags.DEFINE_string, fv, "lstm_criterion", "l1",
            f"lstm: channel criterion inside a pruned layer: {' or '.join(CRITERIA)} (the filter's norm; the "
            "smallest go), or a name that a --custom_modules module registers with "
            "keras_prune.criteria.register_criterion.")
    _positive(fv, "prune_rate", lambda v: 0.0 < v < 1.0, "--prune_rate must be in (0, 1).")
    _positive(fv, "recovery_epochs", lambda v: v >= 0, "--recovery_epochs must be >= 0.")
    for name in ("patience", "lstm_epochs", "lstm_parents", "lstm_children", "lstm_hidden_units"):
        _positive(fv, name, lambda v: v >= 1, f"--{name} must be >= 1.")
    for name in ("lstm_learning_rate", "lstm_temperature"):
        _positive(fv, name, lambda v: v > 0.0, f"--{name} must be > 0.")
    for name in ("lstm_beta", "lstm_tolerance", "lstm_penalty"):
        _positive(fv, name, lambda v: v >= 0.0, f"--{name} must be >= 0.")
    _positive(fv, "lstm_distill_weight", lambda v: 0.0 <= v <= 1.0, "--lstm_distill_weight must be in [0, 1].")


def _define_rnp(fv):
    """Runtime Neural Pruning's flags (defaults: docs/PAPERS.md 3, sized for a CPU) and their validators."""
    from keras_prune.methods.rnp.settings import ORDERS, parse_biases

    _define(flags.DEFINE_integer, fv, "rnp_groups", 4, "rnp: k, ordered channel groups per prunable conv (>= 2).")
    _define(flags.DEFINE_enum, fv, "rnp_order", "norm", list(ORDERS),
            "rnp: channel order inside a conv: by descending filter L2 norm (BatchNorm folded in), or as built.")
    _define(flags.DEFINE_float, fv, "rnp_penalty", 0.1, "rnp: p > 0, the reward lost per extra group at every layer.")
    _define(flags.DEFINE_float, fv, "rnp_alpha", None,
            "rnp: alpha > 0, weight of the final cross-entropy in the reward (unset: mean alpha * L_cls = 1 "
            "under random decisions).")
    _define(flags.DEFINE_integer, fv, "rnp_rounds", 10, "rnp: M, rounds of decision-net then backbone training.")
    _define(flags.DEFINE_integer, fv, "rnp_decision_steps", 100, "rnp: N1, Q-learning minibatches per round.")
    _define(flags.DEFINE_integer, fv, "rnp_backbone_steps", 100, "rnp: N2, backbone minibatches per round.")
    _define(flags.DEFINE_integer, fv, "rnp_warmup_steps", 0,
            "rnp: backbone minibatches under uniformly random group counts before the rounds.")
    _define(flags.DEFINE_integer, fv, "rnp_epsilon_steps", 0,
            "rnp: decision steps over which epsilon falls linearly 1.0 -> 0.1 (0: half of all of them).")
    _define(flags.DEFINE_float, fv, "rnp_gamma", 1.0, "rnp: discount of the TD targets, in [0, 1].")
    _define(flags.DEFINE_float, fv, "rnp_target_update", 0.01,
            "rnp: soft-update rate tau of the target network, in [0, 1] (0: no target network).")
    _define(flags.DEFINE_integer, fv, "rnp_replay", 4096, "rnp: replay capacity in episodes (0: no replay; else at least --batch_size).")
    _define(flags.DEFINE_float, fv, "rnp_q_learning_rate", 1e-3, "rnp: RMSprop learning rate of the decision net.")
    _define(flags.DEFINE_float, fv, "rnp_backbone_learning_rate", 1e-4,
            "rnp: RMSprop learning rate of backbone fine-tuning (warm-up and rounds).")
    _define(flags.DEFINE_float, fv, "rnp_flops_bias", 0.0,
            "rnp: default run-time bias subtracted from the Q-value per extra group (higher: faster, less accurate).")
    _define(flags.DEFINE_string, fv, "rnp_operating_points", "-0.1,0,0.1,0.2,0.5",
            "rnp: comma-separated flops_bias values the report measures.")
    _positive(fv, "rnp_groups", lambda v: v >= 2, "--rnp_groups must be >= 2.")
    _positive(fv, "rnp_penalty", lambda v: v > 0.0, "--rnp_penalty (p) must be > 0: each extra group costs -p.")
    flags.register_validator("rnp_alpha", lambda v: v is None or v > 0.0, flag_values=fv,
                             message="--rnp_alpha must be > 0 (or unset to calibrate it).")
    for name in ("rnp_rounds", "rnp_decision_steps", "rnp_backbone_steps", "rnp_warmup_steps",
                 "rnp_epsilon_steps", "rnp_replay"):
        _positive(fv, name, lambda v: v >= 0, f"--{name} must be >= 0.")
    for name in ("rnp_gamma", "rnp_target_update"):
        _positive(fv, name, lambda v: 0.0 <= v <= 1.0, f"--{name} must be in [0, 1].")
    for name in ("rnp_q_learning_rate", "rnp_backbone_learning_rate"):
        _positive(fv, name, lambda v: v > 0.0, f"--{name} must be > 0.")
    _parses(fv, "rnp_operating_points", parse_biases)


def _parses(fv, name, parser):
    """Validates flag `name` with `parser`, whose error message becomes the flag error."""

    def check(value):
        try:
            parser(value)
        except ValueError as error:
            raise flags.ValidationError(f"--{name}: {error}") from None
        return True

    flags.register_validator(name, check, flag_values=fv)


def _define(definer, fv, *args, **kwargs):
    definer(*args, flag_values=fv, **kwargs)


def _positive(fv, name, check, message):
    flags.register_validator(name, lambda v: v is not None and check(v), message=message, flag_values=fv)


PATH_FLAGS = ("model", "data_dir", "output_dir")
"""Flags that may name a path: a leading `~` is the user's home (the shell leaves `--flag=~/x` alone)."""


def config_from_flags(values):
    """A frozen `RunConfig` from parsed flag values (every config field has a flag, but `verbose`)."""
    import dataclasses

    from keras_prune.pipeline import RunConfig

    settings = {}
    for field in dataclasses.fields(RunConfig):
        if field.name not in values:
            continue
        value = getattr(values, field.name)
        if field.name in PATH_FLAGS and isinstance(value, str) and value.startswith("~"):
            value = os.path.expanduser(value)
        settings[field.name] = tuple(value) if isinstance(value, list) else value
    return RunConfig(**settings)
