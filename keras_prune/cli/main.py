"""`keras-prune` / `bin/prune`: prune a model from the command line."""

import os
import sys

from absl import app, flags

from keras_prune.cli.flags import config_from_flags, define_flags

__all__ = ["main", "run"]

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from keras_prune.data import DatasetNotFoundError
    from keras_prune.errors import PruneError
    from keras_prune.pipeline import run as run_pipeline

    config = config_from_flags(FLAGS)
    flags_text = FLAGS.flags_into_string()
    try:
        run_pipeline(config, flags_text=flags_text)
    except (PruneError, DatasetNotFoundError, ValueError, FileNotFoundError) as error:
        if FLAGS.traceback:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"keras-prune: error: {message} (--traceback shows where)", file=sys.stderr)
        return 2
    return 0


def run():
    """Console-script entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
