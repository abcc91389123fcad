"""What every benchmark records about each model it prunes, for run_all's table and plots.

`evidence(dense, pruned)` is measured, never estimated: the exported SavedModels of both
(BatchNorm folded, loaded back, called through `serve`) are timed at batch 1 and 32, and
the per-layer structure is read off the pruned model.
"""

from keras_prune.export import compare_serving_latency, strip
from keras_prune.graph import count_flops, count_params
from keras_prune.pipeline import layer_table


TIMING = {"repeats": 30, "max_seconds": 10.0}
"""How each SavedModel is timed: median of `repeats` calls, at most `max_seconds` per measurement."""


def use_quick_timing():
    """A `--quick` check of a script times 3 calls of at most 1 s: it checks, it does not measure."""
    TIMING.update(repeats=3, max_seconds=1.0)


def evidence(dense, pruned):
    """{"serving_latency", "params", "nonzero_params", "layers"} of `pruned` against `dense`.

    `pruned` may hold keras_prune layers (gates, masks): it is stripped to the plain model
    that would be exported.
    """
    plain = strip(pruned)
    flops_ratio = count_flops(plain).total / count_flops(dense).total
    params = count_params(plain)
    return {
        "serving_latency": compare_serving_latency(dense, plain, flops_ratio, **TIMING),
        "params": int(params.total),
        "nonzero_params": int(params.nonzero),
        "dense_params": int(count_params(dense).total),
        "layers": layer_table(dense, plain),
    }
