"""TensorBoard summaries of a pruning run: metrics, per-layer sparsity, gate histograms,
text (e.g. the structure table) and the run's hyperparameters.

Tags: scalars under the names given ("loss", "accuracy", "flops", "params"), per-layer
sparsity under "sparsity/<layer>", gate and prune-mask values under "gates/<name>", final
metrics of the hparams dashboard under "final/<metric>".
"""

import importlib.util
import numbers
import os

import numpy as np
import tensorflow as tf
from keras_prune.export.report_md import flatten_keys

__all__ = ["RunSummaries"]

_HPARAM_TYPES = (bool, int, float, str)


class RunSummaries:
    """Writes one run's TensorBoard event file; also a context manager that closes it.

    Example:
        with RunSummaries(run_dir / "tensorboard") as summaries:
            summaries.scalars(step, loss=0.3, accuracy=0.97, flops=1.2e6)
            summaries.layer_sparsity(step, {"conv1": 0.5})

    Args:
        logdir: folder for the event file (created if missing).
    """

    def __init__(self, logdir):
        # `tf.summary.scalar` and friends live in the tensorboard package: fail now with the
        # fix, not at the first summary after an hour of training.
        if importlib.util.find_spec("tensorboard") is None:
            raise ImportError(
                "RunSummaries needs the `tensorboard` package for tf.summary: "
                "`pip install tensorboard`."
            )
        self.logdir = os.fspath(logdir)
        self._writer = tf.summary.create_file_writer(self.logdir)
        self._closed = False

    def scalars(self, step, **values):
        """Writes one scalar per keyword, tagged with its name; None values are skipped.

        Args:
            step: the global step (epoch, generation, ...), an int.
            **values: tag=number, e.g. `loss=0.3, accuracy=0.97, flops=1.2e6, params=4e5`.
        """
        self._write_scalars(step, values, prefix="")

    def layer_sparsity(self, step, sparsities):
        """Writes the sparsity of every layer as a scalar under "sparsity/<layer>".

        Args:
            step: the global step, an int.
            sparsities: {layer name: fraction of channels or weights removed}.
        """
        self._write_scalars(step, _mapping(sparsities, "sparsities"), prefix="sparsity/")

    def histograms(self, step, arrays, *, buckets=None):
        """Writes a histogram of values (gates, prune masks) per name.

        Args:
            step: the global step, an int.
            arrays: {tag: array of values}, e.g. {"gates/conv1": gate values}.
            buckets: histogram buckets; None uses TensorBoard's default.
        """
        from tensorboard.plugins.histogram.summary_v2 import histogram_pb

        step = _step(step)
        with self._default():
            for name, array in _mapping(arrays, "arrays").items():
                values = np.asarray(array, dtype=np.float32).reshape(-1)
                # The buckets counted in NumPy: `tf.summary.histogram` runs a dozen eager ops per
                # histogram, 0.1 s an epoch for scratch's 13 gate groups on VGG-16, inside its timed search.
                summary = histogram_pb(str(name), values, buckets=buckets)
                tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)

    def text(self, tag, markdown, *, step=0):
        """Writes Markdown text (TensorBoard's text tab renders it), e.g. the structure table.

        Args:
            tag: the text's tag.
            markdown: the Markdown string.
            step: the global step, an int.
        """
        if not isinstance(markdown, str):
            raise TypeError(
                f"Expected `markdown` to be a str. Received: markdown={type(markdown).__name__}"
            )
        step = _step(step)
        with self._default():
            tf.summary.text(str(tag), markdown, step=step)

    def hparams(self, config, metrics, *, step=0):
        """Records the run's hyperparameters and final metrics for the HParams dashboard.

        Nested config dicts are flattened to dotted names; values that are not bool, int,
        float or str (lists, None, paths) are recorded as their `str`. Each metric is
        written as a scalar "final/<name>" (None metrics are skipped), kept apart from the
        per-step tags so the dashboard shows the final value.

        Args:
            config: {flag: value}, the resolved config.
            metrics: {name: number}, e.g. {"accuracy": 0.97, "flops": 1.2e6}.
            step: the step the metric scalars are written at.
        """
        from tensorboard.plugins.hparams import api as hp  # only needed here

        values = {name: _hparam_value(v) for name, v in flatten_keys(_mapping(config, "config")).items()}
        metrics = {k: v for k, v in _mapping(metrics, "metrics").items() if v is not None}
        step = _step(step)
        with self._default():
            hp.hparams_config(
                hparams=[hp.HParam(name) for name in values],
                metrics=[hp.Metric(f"final/{name}", display_name=str(name)) for name in metrics],
            )
            hp.hparams(values)
        self._write_scalars(step, metrics, prefix="final/")

    def flush(self):
        """Writes buffered summaries to disk now."""
        self._check_open()
        self._writer.flush()

    def close(self):
        """Flushes and closes the event file; calling it again does nothing."""
        if not self._closed:
            self._writer.close()
            self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def _write_scalars(self, step, values, *, prefix):
        step = _step(step)
        for name, value in values.items():
            if value is not None and not _is_number(value):
                raise TypeError(
                    f"Expected a number (or None) for summary {prefix}{name}. "
                    f"Received: {name}={value!r}"
                )
        with self._default():
            for name, value in values.items():
                if value is not None:
                    tf.summary.scalar(f"{prefix}{name}", float(value), step=step)

    def _default(self):
        self._check_open()
        return self._writer.as_default()

    def _check_open(self):
        if self._closed:
            raise RuntimeError(f"RunSummaries for {self.logdir!r} is closed.")


def _step(step):
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"Expected `step` to be an int. Received: step={step!r}")
    return int(step)


def _mapping(value, name):
    if not isinstance(value, dict):
        raise TypeError(f"Expected `{name}` to be a dict. Received: {name}={type(value).__name__}")
    return value


def _is_number(value):
    if getattr(value, "ndim", None) == 0:
        value = np.asarray(value).item()  # NumPy and TF scalars
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _hparam_value(value):
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, _HPARAM_TYPES) else str(value)
