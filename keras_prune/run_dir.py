"""The run folder: refuse to mix two runs, check it is usable before any work."""

import json
import os
import shutil

from keras_prune.errors import OutputDirError
from keras_prune.export.report_io import read_json, write_json

__all__ = [
    "MIN_FREE_BYTES", "MODEL_DIGEST", "RUN_CONFIG", "RUN_MARKER", "check_input_outside", "check_local",
    "check_resume_config", "file_digest", "prepare_output_dir", "replace_run",
]

RUN_MARKER = "flags.txt"
"""A folder holding this file and `RUN_CONFIG` holds a run."""

RUN_CONFIG = "run_config.json"
"""The settings the run started with; `--resume` must continue with the same ones."""

MODEL_DIGEST = "model_sha256"
"""The record's SHA-256 of an own `--model` file: a resumed run must start from the same model,
and the same path may hold another one by then (retrained, re-exported)."""

MIN_FREE_BYTES = 256 * 2**20
"""Free space a run needs to start (checkpoints, models, SavedModels, TensorBoard logs)."""

_PROBE = ".write-test"
"""The file `prepare_output_dir` writes and removes to check that the folder is writable."""

RESUME_FREE = frozenset(
    {"resume", "overwrite", "output_dir", "data_dir", "verbose", "strategy", "tpu_address", "latency_repeats", "export"}
)
"""Settings a resumed run may change: where and how it runs, not what it computes."""


def check_local(path):
    """Raises an OutputDirError for a URL (gs://...): the run folder is written through the local
    filesystem, where such a path would silently become a local folder named like it."""
    if "://" in os.fspath(path):
        raise OutputDirError(
            f"--output_dir={path} is a URL, but keras-prune writes its run folder (atomic renames, checkpoints) "
            "through the local filesystem. Give a local folder, or a bucket mounted as one (e.g. with gcsfuse); "
            "--data_dir may be a gs:// URL."
        )


def check_input_outside(path, model_file):
    """Raises an OutputDirError if the `--model` file lies in the run folder `path`: the run writes
    its own model.keras there (`--overwrite` would delete the input before reading it)."""
    folder, model = os.path.abspath(path), os.path.abspath(model_file)
    if os.path.commonpath([folder, model]) == folder:
        raise OutputDirError(
            f"--model={model_file} is inside --output_dir={path}, which the run writes (and --overwrite "
            "deletes); keep the model outside the run folder, e.g. copy it elsewhere first."
        )


def prepare_output_dir(path, *, resume=False, overwrite=False):
    """Creates or validates `path` for a run; deletes nothing (see `replace_run`).

    A folder that already holds a run is refused unless `resume` (continue it) or
    `overwrite` (replace it, once the command is known to be usable). A non-empty folder
    holding no run is refused: the run's files would mix with the user's, and a later
    `--overwrite` would delete them all. The folder must be writable: that is checked now,
    not after hours of training.
    """
    if resume and overwrite:
        raise OutputDirError("--resume and --overwrite contradict each other; pass one.")
    check_local(path)
    path = os.path.abspath(path)
    has_marker, has_config = (os.path.exists(os.path.join(path, name)) for name in (RUN_MARKER, RUN_CONFIG))
    if _cut_off(path):
        if resume:
            raise OutputDirError(
                f"--output_dir={path} holds a run cut off before it began ({RUN_CONFIG} written, {RUN_MARKER} "
                "not): there is nothing to continue. Start it again with --overwrite."
            )
        if not overwrite:
            raise OutputDirError(
                f"--output_dir={path} holds a run cut off before it began; pass --overwrite to replace it, "
                "or choose another folder."
            )
        return _usable(path)
    if has_marker != has_config:
        # Every run writes both; a folder with one of them, not a run cut off between the two
        # (above), is someone else's: never delete it, never write a run into it.
        raise OutputDirError(
            f"--output_dir={path} holds {RUN_MARKER if has_marker else RUN_CONFIG} but not "
            f"{RUN_CONFIG if has_marker else RUN_MARKER}, so it is not a keras-prune run folder; "
            "choose another folder (or empty this one yourself)."
        )
    holds_run = has_marker
    if holds_run and not (resume or overwrite):
        raise OutputDirError(
            f"--output_dir={path} holds another run. Pass --resume to continue it, "
            "--overwrite to replace it, or choose another folder."
        )
    if resume and not holds_run:
        raise OutputDirError(f"--resume was given but {path} holds no run to continue.")
    if not holds_run and os.path.isdir(path) and set(os.listdir(path)) - {_PROBE}:  # a probe a crash left
        raise OutputDirError(
            f"--output_dir={path} is not empty and holds no keras-prune run; give a new or empty folder "
            "(a run folder holds one run only, and --overwrite would later delete everything in it)."
        )
    return _usable(path)


def _usable(path):
    """`path`, once it is known to be writable with room for a run (created if need be)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputDirError(f"--output_dir={path} is a file, not a folder: name a folder for the run.")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, _PROBE)
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise OutputDirError(f"--output_dir={path} is not writable: {e.strerror}.") from None
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        raise OutputDirError(
            f"--output_dir={path} has {free / 2**20:.0f} MiB free; a run needs at least "
            f"{MIN_FREE_BYTES / 2**20:.0f} MiB (checkpoints, models, logs). Free some space or choose another folder."
        )
    return path


_RECORD_KEYS = frozenset({"method", "model", "output_dir", "target_flops"})
"""Keys every run's `RUN_CONFIG` has: with them, a lone one is a run's, not a file of the user's."""


def _cut_off(path):
    """Whether `path` holds a run cut off between its two first writes: its `RUN_CONFIG` record
    (recognised by its keys), no `RUN_MARKER`, and nothing else (the run writes nothing more
    before the marker, save a temporary file of the marker's own atomic write)."""
    record = os.path.join(path, RUN_CONFIG)
    if not os.path.isfile(record) or os.path.exists(os.path.join(path, RUN_MARKER)):
        return False
    if any(not (name in (RUN_CONFIG, _PROBE) or name.startswith(".tmp-")) for name in os.listdir(path)):
        return False
    try:
        saved = read_json(record)
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and _RECORD_KEYS <= set(saved)


def replace_run(path):
    """`--overwrite`: empties `path` if it holds a run (a folder `prepare_output_dir` accepted: a run
    folder, one cut off before it began, or a new or empty one). Called once the new command has
    passed its checks, so a mistyped one leaves the old run alone."""
    both = os.path.exists(os.path.join(path, RUN_MARKER)) and os.path.exists(os.path.join(path, RUN_CONFIG))
    if both or _cut_off(path):
        # Renamed away first (atomic): a deletion cut short leaves a sibling to remove, never a
        # half-emptied run folder that neither --resume nor --overwrite accepts.
        old = f"{path}.replaced-{os.getpid()}"
        try:
            os.rename(path, old)
        except OSError:  # a folder that cannot move (a mount point, the working directory): emptied in place
            shutil.rmtree(path)
        else:
            shutil.rmtree(old, ignore_errors=True)  # what it cannot delete stays in the sibling, apart from the run
        os.makedirs(path, exist_ok=True)


def check_resume_config(path, settings, *, resume, defaults=None):
    """Records `settings` (a JSON-able dict) for a new run, or checks a resumed run's against them.

    A resumed run that changed what it computes (model, data, budget, epochs, seed...)
    would mix two experiments in one report, so it is refused with the differing flags.
    A setting the run's record lacks (a flag added since) counts as its value in `defaults`.
    """
    defaults = json.loads(json.dumps(defaults or {}))
    record = os.path.join(path, RUN_CONFIG)
    settings = json.loads(json.dumps(settings))
    if not resume or not os.path.exists(record):  # a new run (or one from before the record)
        write_json(record, settings)
        return
    saved = read_json(record)
    saved = {**defaults, **saved}
    changed = sorted(k for k in set(saved) | set(settings) if k not in RESUME_FREE and saved.get(k) != settings.get(k))
    if "model" in changed and MODEL_DIGEST in changed:  # another --model: its file's digest says no more
        changed.remove(MODEL_DIGEST)
    if changed:
        differences = "; ".join(_difference(k, saved.get(k), settings.get(k)) for k in changed)
        raise OutputDirError(
            f"--resume continues the run in {path} with its own settings, but {differences}. "
            f"Resume with the run's flags (--flagfile={os.path.join(path, RUN_MARKER)}) or start a new run."
        )


def _difference(key, then, now):
    if key == MODEL_DIGEST and now is None:  # the same --model (see check_resume_config), no file now
        return "the --model file the run started from is not there any more"
    if key == MODEL_DIGEST:
        return f"the --model file is not the one the run started from (SHA-256 {then} then, {now} now)"
    return f"--{key}: {then!r} in the run, {now!r} now"


def file_digest(path):
    """SHA-256 (hex) of a file, or of a folder's files and their relative paths."""
    import hashlib

    digest = hashlib.sha256()
    paths = [path] if os.path.isfile(path) else sorted(
        os.path.join(root, name) for root, _, names in os.walk(path) for name in names
    )
    for file in paths:
        digest.update(os.path.relpath(file, path).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(2**20), b""):
                digest.update(block)
    return digest.hexdigest()
