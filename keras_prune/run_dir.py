"""The run folder: refuse to mix two runs, check it is writable before any work."""

import os
import shutil

from keras_prune.errors import OutputDirError

__all__ = ["prepare_output_dir", "RUN_MARKER"]

RUN_MARKER = "flags.txt"
"""A folder holding this file holds a run."""


def prepare_output_dir(path, *, resume=False, overwrite=False):
    """Creates or validates `path` for a run.

    A folder that already holds a run is refused unless `resume` (continue it) or
    `overwrite` (delete it first). The folder must be writable: that is checked now,
    not after hours of training.
    """
    if resume and overwrite:
        raise OutputDirError("--resume and --overwrite contradict each other; pass one.")
    path = os.path.abspath(path)
    holds_run = os.path.exists(os.path.join(path, RUN_MARKER))
    if holds_run and overwrite:
        shutil.rmtree(path)
    elif holds_run and not resume:
        raise OutputDirError(
            f"--output_dir={path} holds another run. Pass --resume to continue it, "
            "--overwrite to replace it, or choose another folder."
        )
    elif resume and not holds_run:
        raise OutputDirError(f"--resume was given but {path} holds no run to continue.")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise OutputDirError(f"--output_dir={path} is not writable: {e.strerror}.") from None
    return path
