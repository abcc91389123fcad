"""Measured CPU inference latency: the number every report puts next to FLOPs."""

import itertools
import math
import statistics
import time

import numpy as np
import tensorflow as tf

__all__ = [
    "measure_latency",
    "measure_saved_model_latency",
    "measure_saved_model_pair_latency",
    "serving_latency_report",
]


def measure_latency(model, *, batch_size=1, repeats=50, warmup=10, fn=None, max_seconds=None):
    """Median and 90th-percentile wall time of one inference call, in milliseconds.

    The model is called through one `tf.function` (traced once, during warm-up) on a
    fixed random batch, the way a served model runs.

    Args:
        model: a Keras model (or any callable with `input_shape` given by `fn`).
        batch_size: examples per call.
        repeats: timed calls after warm-up.
        warmup: untimed calls first (tracing, caches).
        fn: optional callable to time instead of `model` (e.g. a SavedModel signature).
        max_seconds: stop timing after this long (at least 5 calls): a big model at a big
            batch would otherwise take minutes.

    Returns:
        {"median_ms", "p90_ms", "batch_size", "repeats"} (`repeats`: calls actually timed).
    """
    call = fn or tf.function(lambda inputs: model(inputs, training=False))
    return _time_calls(call, _batch(model.input_shape[1:], batch_size), repeats, warmup, max_seconds)


def measure_saved_model_latency(path, input_shape, *, batch_sizes=(1, 32), repeats=50, warmup=10, max_seconds=20.0):
    """`measure_latency` of an exported SavedModel's `serve` function, loaded back as a server would.

    Args:
        path: a SavedModel folder with a `serve` function (Keras `model.export` writes one)
            or a `serving_default` signature.
        input_shape: one example's shape (no batch dimension).
        batch_sizes: the batch sizes to time.

    Returns:
        {batch_size: the dict `measure_latency` returns}.
    """
    loaded, serve = _load_serve(path)  # `loaded` kept: its variables live as long as it does
    return {b: _time_calls(serve, _batch(input_shape, b), repeats, warmup, max_seconds) for b in batch_sizes}


def _load_serve(path):
    """The loaded SavedModel and its `serve` function (or `serving_default` signature)."""
    loaded = tf.saved_model.load(path)
    return loaded, loaded.serve if hasattr(loaded, "serve") else loaded.signatures["serving_default"]


def measure_saved_model_pair_latency(paths, input_shape, *, batch_sizes=(1, 32), repeats=30, warmup=3, block=5,
                                     max_seconds=20.0, images=None):
    """`measure_saved_model_latency` of two SavedModels, timed in alternating blocks.

    Timing one model and then the other lets whatever changes on the machine between the
    two (frequency, other processes) into their ratio: one dense SavedModel timed three
    times within minutes in one benchmark here read 1.85, 3.24 and 3.15 ms. Alternating
    blocks of `block` calls (the first call of each block untimed, so each block starts
    with that model's weights in cache) puts both under the same conditions.

    Args:
        paths: the two SavedModel folders (e.g. dense, pruned).
        input_shape: one example's shape (no batch dimension).
        repeats: timed calls per model and batch size (at most; see `max_seconds`).
        max_seconds: per model and batch size; once one model has used it, both stop (each
            gets at least one block).
        images: optional real inputs `(n, *input_shape)`: each call takes the next batch of them
            (cycling), for a model whose cost depends on its input (rnp). None: one fixed
            random batch, which is all a static model's time depends on.

    Returns:
        One `{batch_size: {"median_ms", "p90_ms", "batch_size", "repeats"}}` per path.
    """
    loaded = [_load_serve(p) for p in paths]  # kept: their variables live as long as they do
    serves = [serve for _, serve in loaded]
    results = [{} for _ in paths]
    for b in batch_sizes:
        x = _batch(input_shape, b) if images is None else _batches(images, b)
        for serve in serves:
            for _ in range(warmup):
                serve(_next(x))
        times = [[] for _ in paths]
        spent = [0.0 for _ in paths]

        while True:  # rounds of one block each; all stop once one is out of time, so the blocks stay paired
            running = [i for i in range(len(serves)) if len(times[i]) < repeats and max(spent) <= max_seconds]
            if not running:
                break
            for i in running:
                started = time.perf_counter()
                block_times = _time_block(serves[i], x, min(block, repeats - len(times[i])))
                spent[i] += time.perf_counter() - started
                times[i].extend(block_times)
        for i in range(len(paths)):
            results[i][b] = _summary(times[i], b)
    return results


def _time_block(call, x, calls):
    """`calls` timed calls on `x` (a batch, or a cycle of them), after one untimed."""
    _fetch(call(_next(x)))  # untimed: this model's weights back in cache
    times = []
    for _ in range(calls):
        batch = _next(x)
        start = time.perf_counter()
        _fetch(call(batch))
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def _fetch(result):
    return result.numpy() if hasattr(result, "numpy") else result


def serving_latency_report(dense, pruned, flops_ratio):
    """Dense vs pruned SavedModel latency per batch size (each a `measure_saved_model_latency` result).

    `ratio` is pruned / dense median time; `ratio_over_flops_ratio` is 1.0 when the time
    fell exactly as much as the FLOPs did, above 1 when it fell less.
    """
    report = {}
    for b in dense:
        ratio = pruned[b]["median_ms"] / dense[b]["median_ms"]
        report[f"batch_{b}"] = {
            "dense_ms": round(dense[b]["median_ms"], 4),
            "pruned_ms": round(pruned[b]["median_ms"], 4),
            "ratio": round(ratio, 4),
            "ratio_over_flops_ratio": round(ratio / flops_ratio, 4),
            "repeats": min(dense[b]["repeats"], pruned[b]["repeats"]),
        }
    return report


def _batches(images, batch_size):
    """An endless `itertools.cycle` of consecutive `batch_size` batches of `images` (repeated to fill one
    if too few)."""
    images = np.asarray(images, "float32")
    if len(images) < batch_size:
        images = np.resize(images, (batch_size, *images.shape[1:]))
    return itertools.cycle([tf.constant(images[i : i + batch_size]) for i in range(0, len(images) - batch_size + 1, batch_size)])


def _next(x):
    return next(x) if isinstance(x, itertools.cycle) else x


def _batch(input_shape, batch_size):
    shape = (batch_size, *input_shape)
    return tf.constant(np.random.default_rng(0).normal(size=shape).astype("float32"))


def _time_calls(call, x, repeats, warmup, max_seconds):
    for _ in range(warmup):
        call(x)
    times = []
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    for _ in range(repeats):
        start = time.perf_counter()
        _fetch(call(x))
        times.append((time.perf_counter() - start) * 1000.0)
        if deadline is not None and len(times) >= 5 and time.perf_counter() > deadline:
            break
    return _summary(times, int(x.shape[0]))


def _summary(times, batch_size):
    times = sorted(times)
    return {
        "median_ms": statistics.median(times),
        "p90_ms": times[max(math.ceil(0.9 * len(times)) - 1, 0)],  # nearest rank
        "batch_size": batch_size,
        "repeats": len(times),
    }
