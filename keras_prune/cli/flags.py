"""Command-line flags, defined in one function; importing this module defines nothing."""

from absl import flags

from keras_prune.methods import METHODS
from keras_prune.training.strategy import STRATEGIES

__all__ = ["define_flags", "config_from_flags"]


def define_flags(flag_values=None):
    """Defines every keras-prune flag (on absl's global FLAGS unless `flag_values` is given)."""
    fv = flag_values if flag_values is not None else flags.FLAGS
    _define(flags.DEFINE_enum, fv, "method", None, list(METHODS), "Pruning method.")
    _define(flags.DEFINE_string, fv, 
        "model", None, "A zoo name (see keras_prune.models.MODEL_NAMES) or a path to your own .keras model."
    )
    _define(flags.DEFINE_string, fv, "dataset", "mnist5k", "Embedded (mnist5k, digits) or a tfds name prepared in --data_dir.")
    _define(flags.DEFINE_string, fv, "data_dir", None, "tfds data directory (nothing is downloaded).")
    _define(flags.DEFINE_string, fv, "output_dir", None, "Run folder: report, plots, exported model, TensorBoard logs.")
    _define(flags.DEFINE_float, fv, "target_flops", 0.5, "Fraction of the original FLOPs to keep, in (0, 1].")
    _define(flags.DEFINE_integer, fv, "pretrain_epochs", 10, "Epochs to train an untrained (zoo) model before pruning.")
    _define(flags.DEFINE_float, fv, "pretrain_learning_rate", 0.01, "SGD learning rate of pre-training.")
    _define(flags.DEFINE_integer, fv, "finetune_epochs", 5, "Epochs of fine-tuning after pruning.")
    _define(flags.DEFINE_integer, fv, "epochs", 10, "Epochs of the method's own search phase, where it has one.")
    _define(flags.DEFINE_integer, fv, "batch_size", 128, "Global batch size (split across replicas).")
    _define(flags.DEFINE_float, fv, "learning_rate", 0.01, "Learning rate of fine-tuning / retraining.")
    _define(flags.DEFINE_integer, fv, "seed", 0, "Random seed (data order, initialisation, search).")
    _define(flags.DEFINE_enum, fv, "strategy", "auto", list(STRATEGIES), "tf.distribute strategy.")
    _define(flags.DEFINE_string, fv, "tpu_address", None, "TPU name or grpc:// address for --strategy=tpu.")
    _define(flags.DEFINE_bool, fv, "resume", False, "Continue the run in --output_dir.")
    _define(flags.DEFINE_bool, fv, "overwrite", False, "Replace the run in --output_dir.")
    _define(flags.DEFINE_multi_enum, fv, 
        "export", ["saved_model", "keras"], ["saved_model", "keras", "tflite"], "Export formats (repeatable)."
    )
    _define(flags.DEFINE_integer, fv, "latency_repeats", 30, "Timed batch-1 inference calls per latency measurement.")
    _define(flags.DEFINE_bool, fv, "prune_residual", False, "l1: also prune channel groups tied by residual additions.")
    _define(flags.DEFINE_bool, fv, "traceback", False, "Show the full traceback of an error.")
    flags.mark_flags_as_required(["method", "model", "output_dir"], flag_values=fv)
    flags.register_validator(
        "target_flops",
        lambda v: v is not None and 0.0 < v <= 1.0,
        message="--target_flops must be in (0, 1]: the fraction of FLOPs to keep.",
        flag_values=fv,
    )
    for name in ("batch_size", "latency_repeats"):
        flags.register_validator(
            name, lambda v: v is not None and v > 0, message=f"--{name} must be > 0.", flag_values=fv
        )
    for name in ("pretrain_epochs", "finetune_epochs", "epochs"):
        flags.register_validator(
            name, lambda v: v is not None and v >= 0, message=f"--{name} must be >= 0.", flag_values=fv
        )


def _define(definer, fv, *args, **kwargs):
    definer(*args, flag_values=fv, **kwargs)


def config_from_flags(values):
    """A frozen `RunConfig` from parsed flag values."""
    from keras_prune.pipeline import RunConfig

    return RunConfig(
        method=values.method,
        model=values.model,
        output_dir=values.output_dir,
        dataset=values.dataset,
        data_dir=values.data_dir,
        target_flops=values.target_flops,
        pretrain_epochs=values.pretrain_epochs,
        pretrain_learning_rate=values.pretrain_learning_rate,
        finetune_epochs=values.finetune_epochs,
        epochs=values.epochs,
        batch_size=values.batch_size,
        learning_rate=values.learning_rate,
        seed=values.seed,
        strategy=values.strategy,
        tpu_address=values.tpu_address,
        resume=values.resume,
        overwrite=values.overwrite,
        export=tuple(values.export),
        latency_repeats=values.latency_repeats,
        prune_residual=values.prune_residual,
    )
