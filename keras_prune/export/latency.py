"""Measured CPU inference latency: the number every report puts next to FLOPs."""

import statistics
import time

import numpy as np
import tensorflow as tf

__all__ = ["measure_latency"]


def measure_latency(model, *, batch_size=1, repeats=50, warmup=10, fn=None):
    """Median and 90th-percentile wall time of one inference call, in milliseconds.

    The model is called through one `tf.function` (traced once, during warm-up) on a
    fixed random batch, the way a served model runs.

    Args:
        model: a Keras model (or any callable with `input_shape` given by `fn`).
        batch_size: examples per call.
        repeats: timed calls after warm-up.
        warmup: untimed calls first (tracing, caches).
        fn: optional callable to time instead of `model` (e.g. a SavedModel signature).

    Returns:
        {"median_ms", "p90_ms", "batch_size", "repeats"}.
    """
    shape = (batch_size, *model.input_shape[1:])
    x = tf.constant(np.random.default_rng(0).normal(size=shape).astype("float32"))
    call = fn or tf.function(lambda inputs: model(inputs, training=False))
    for _ in range(warmup):
        call(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = call(x)
        _ = result.numpy() if hasattr(result, "numpy") else result
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p90_ms": times[min(len(times) - 1, int(0.9 * len(times)))],
        "batch_size": batch_size,
        "repeats": repeats,
    }
