"""Atomic file writes: a crash never leaves a half-written artefact behind."""

import json
import os
import tempfile

__all__ = ["atomic_write", "write_json", "read_json"]


def atomic_write(path, data, *, mode="w"):
    """Writes `data` to `path` through a temporary file in the same folder and a rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj):
    """Writes `obj` as indented JSON, atomically (NumPy scalars become numbers)."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False, default=_plain) + "\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Cannot write {type(value).__name__} to JSON: {value!r}")
