"""The served form of a model: a SavedModel with BatchNorm folded, and its measured latency."""

import os
import tempfile

from keras_prune.export.fold import fold_batch_norms
from keras_prune.export.latency import measure_saved_model_pair_latency, serving_latency_report
from keras_prune.export.report_io import replace_folder

__all__ = ["SERVING_BATCH_SIZES", "compare_serving_latency", "export_saved_model"]

SERVING_BATCH_SIZES = (1, 32)


def export_saved_model(model, path):
    """Writes `model` as a SavedModel with a `serve` function, BatchNorm folded into the
    convolutions as converters do (inference only: keep `.keras` for training)."""
    folded = fold_batch_norms(model)
    return replace_folder(path, lambda tmp: folded.export(tmp, format="tf_saved_model", verbose=False))


def compare_serving_latency(dense, pruned, flops_ratio, *, repeats=30, max_seconds=10.0, images=None):
    """Batch-1 and batch-32 latency of `pruned` against `dense`, both exported the same way,
    loaded back, called through `serve` in alternating blocks (see
    `measure_saved_model_pair_latency` and `serving_latency_report`).

    Args:
        dense: the dense Keras model.
        pruned: the pruned Keras model, or the path of its exported SavedModel (a method
            with its own served form, e.g. rnp, exports it itself).
        flops_ratio: pruned / dense FLOPs, for the `ratio_over_flops_ratio` entries.
        images: optional real inputs both are fed in turn (see `measure_saved_model_pair_latency`);
            needed when the pruned model's cost depends on its input (rnp).
    """
    with tempfile.TemporaryDirectory() as tmp:
        dense_path = export_saved_model(dense, os.path.join(tmp, "dense"))
        if not isinstance(pruned, str):
            pruned = export_saved_model(pruned, os.path.join(tmp, "pruned"))
        dense_times, pruned_times = measure_saved_model_pair_latency(
            (dense_path, pruned), dense.input_shape[1:], batch_sizes=SERVING_BATCH_SIZES, repeats=repeats,
            max_seconds=max_seconds, images=images,
        )
    return serving_latency_report(dense_times, pruned_times, flops_ratio)
