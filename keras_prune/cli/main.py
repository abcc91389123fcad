"""`keras-prune` / `bin/prune`: prune a model from the command line."""

import os
import sys

from absl import app, flags

from keras_prune.cli.flags import config_from_flags, define_flags

__all__ = ["command_line_flags", "main", "run", "run_flags_text", "show_in_help", "unused_flag_notes"]

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    import tensorflow as tf

    from keras_prune.data import DatasetNotFoundError
    from keras_prune.errors import PruneError
    from keras_prune.pipeline import run as run_pipeline

    config = config_from_flags(FLAGS)
    for note in unused_flag_notes(FLAGS, config, command_line=command_line_flags(sys.argv, FLAGS)):
        print(f"keras-prune: note: {note}", file=sys.stderr)
    try:
        run_pipeline(config, flags_text=run_flags_text(FLAGS))
    except tf.errors.ResourceExhaustedError as error:
        if FLAGS.traceback:
            raise
        print(f"keras-prune: error: out of memory ({error.message.splitlines()[0]}); start a new run with a "
              "smaller --batch_size (with --overwrite or another --output_dir: a resumed run keeps its own batch "
              "size) (--traceback shows where)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if FLAGS.traceback:
            raise
        print(f"keras-prune: interrupted; {_resume_hint(config)}", file=sys.stderr)
        return 130
    except (PruneError, DatasetNotFoundError, ValueError, OSError) as error:
        if FLAGS.traceback:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        # Only an input error is fixed by changing the command; a failed write (disk full, ...) leaves
        # a run that can go on once its cause is gone.
        hint = f"; {_resume_hint(config)}" if type(error) is OSError else ""
        print(f"keras-prune: error: {message}{hint} (--traceback shows where)", file=sys.stderr)
        return 2
    return 0


def command_line_flags(argv, flag_values):
    """Names of the flags written in `argv` itself; those read from a --flagfile are not among them."""
    names = set()
    for token in argv[1:]:
        if not token.startswith("-") or token == "--":
            continue
        name = token.lstrip("-").split("=", 1)[0]
        if name not in flag_values and name.startswith("no") and name[2:] in flag_values:
            name = name[2:]  # --noresume
        if name in flag_values and name != "flagfile":
            names.add(name)
    return names


def unused_flag_notes(flag_values, config, *, command_line=None):
    """One line per flag given that this run does not read (it would be silently ignored).

    Args:
        command_line: the flags written on the command line (`command_line_flags`), the only
            ones noted: a flagfile sets flags for several methods (flags/smoke.flags), and a
            run's flags.txt every flag. None notes every flag given.
    """
    from keras_prune.cli.flags import flag_owner
    from keras_prune.data import DATASET_NAMES
    from keras_prune.methods import GENERAL_SETTINGS, ignored_settings
    from keras_prune.pipeline import names_a_file

    def written(name):
        return flag_values[name].present and (command_line is None or name in command_line)

    notes = []
    ignored = ignored_settings(config.method, [name for name in GENERAL_SETTINGS if written(name)])
    if ignored:  # e.g. --method=olmp --target_flops=0.1: OLMP searches its own compression
        given = ", ".join(f"--{name}" for name in ignored)
        notes.append(f"--method={config.method} does not use {given}; ignored")
    others = [name for name in flag_values if written(name) and flag_owner(name) not in (None, config.method)]
    if others:  # e.g. --method=l1 --patience=3 (lstm's)
        given = ", ".join(f"--{name} ({flag_owner(name)})" for name in sorted(others))
        notes.append(f"--method={config.method} does not use the other methods' {given}; ignored")
    own_model = names_a_file(config.model)
    pretraining = ["pretrain_epochs"] + (
        [] if config.method == "slimming" else ["pretrain_learning_rate", "pretrain_schedule", "pretrain_weight_decay"]
    )
    unread = [f"--{name}" for name in pretraining if own_model and written(name)]
    if unread:  # slimming's sparsity training reads the rate and schedule
        notes.append(f"--model={config.model} is your own model, taken as trained: there is no pre-training, so "
                     f"{', '.join(unread)} {'is' if len(unread) == 1 else 'are'} ignored")
    if written("custom_modules") and not own_model:
        notes.append(f"--custom_modules registers the layers of your own --model file; --model={config.model} "
                     "is a zoo model, so it is ignored")
    if config.method == "olmp" and written("olmp_constraint_examples") and config.olmp_constraint != "validation":
        notes.append("--olmp_constraint_examples is read with --olmp_constraint=validation only; ignored")
    if written("data_dir") and config.dataset in DATASET_NAMES:
        notes.append(f"--data_dir is where tfds datasets are; --dataset={config.dataset} ships inside "
                     "keras-prune, so it is ignored")
    if written("tpu_address") and config.strategy != "tpu":
        notes.append(f"--tpu_address is used with --strategy=tpu only (now --strategy={config.strategy}); ignored")
    if written("export"):  # a given --export replaces the default list, it does not add to it
        dropped = [name for name in flag_values["export"].default if name not in config.export]
        if dropped:
            without = ", and the report has no serving latency" if "saved_model" in dropped else ""
            notes.append(f"--export replaces its default list: no {' or '.join(dropped)} export{without}; to keep "
                         f"them, pass --export={' --export='.join([*config.export, *dropped])}")
    return notes


OWN_FLAGS_MODULE = define_flags.__module__
"""The module that defines keras-prune's flags (absl keys flags by their defining module)."""
RUN_CONTROL_FLAGS = ("resume", "overwrite", "traceback")
"""Flags about this invocation, not the run: left out of the run's flags.txt, so that
`bin/prune --flagfile=<run>/flags.txt --resume` continues it whatever the first command passed."""


def run_flags_text(flag_values):
    """keras-prune's parsed flags as flagfile text, without `RUN_CONTROL_FLAGS` (nor the flags
    other libraries define: absl's logging, TensorFlow's TPU tracer, ...)."""
    own = {f.name for f in flag_values.get_flags_for_module(OWN_FLAGS_MODULE)} - set(RUN_CONTROL_FLAGS)
    written = {f"--{name}" for name in own} | {f"--no{name}" for name in own}
    lines = flag_values.flags_into_string().splitlines()
    return "".join(f"{line}\n" for line in lines if line.split("=", 1)[0] in written)


def _resume_hint(config):
    from keras_prune.run_dir import RUN_MARKER

    marker = os.path.join(config.output_dir, RUN_MARKER)
    if not os.path.exists(marker):
        return "nothing was kept (the run had not started)"
    return f"continue with: bin/prune --flagfile={marker} --resume"


def run():
    """Console-script entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    define_flags()
    show_in_help(FLAGS)
    app.run(lambda argv: sys.exit(main(argv)))


def show_in_help(flag_values):
    """Makes --help and --helpshort list keras-prune's flags: absl lists the main program's key
    flags, and ours are defined in `keras_prune.cli.flags`, not in `bin/prune` or the console script."""
    for flag in flag_values.get_flags_for_module(OWN_FLAGS_MODULE):
        flag_values.register_key_flag_for_module(sys.argv[0], flag)
