"""Benchmark: does a convolution with fewer channels run faster on this CPU, whatever the count?

Pruning leaves odd channel counts (a ResNet-20 x0.5 pruned to half its FLOPs keeps 2 to 14
channels per layer). This measures what that costs: a plain conv net whose inner layers
have `c` channels between 16-channel layers, for c from 16 down, exported as SavedModels
and timed against the c = 16 net in alternating blocks (`compare_serving_latency`, the
same measurement as every benchmark's latency cells). If latency followed FLOPs, every
c < 16 would be faster.

Writes benchmarks/results/channel_counts.json.
Run: python benchmarks/channel_counts.py [--channels 16,15,12,9,8,7,5,4] [--quick]
"""

import argparse
import os
import time

import keras

from common import results_dir
from evidence import TIMING, use_quick_timing

from keras_prune.export.report_io import write_json
from keras_prune.export.serving import compare_serving_latency
from keras_prune.graph import count_flops
from keras_prune.pipeline import _environment


def conv_net(inner_channels, depth=6, width=16):
    """28x28x1 -> conv(width) -> depth x [conv(inner_channels), conv(width)] -> pool -> 10 logits."""
    x = inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    for _ in range(depth):
        x = keras.layers.Conv2D(inner_channels, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name=f"conv_net_{inner_channels}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", default="16,15,12,9,8,7,5,4", help="inner channel counts to time")
    parser.add_argument("--quick", action="store_true", help="two counts, 3 timed calls, a temporary folder")
    args = parser.parse_args()
    counts = [int(c) for c in args.channels.split(",")]
    if args.quick:
        counts = counts[:2]
        use_quick_timing()
    started = time.perf_counter()
    keras.utils.set_random_seed(0)
    dense = conv_net(16)
    dense_flops = count_flops(dense).total
    points = []
    for count in counts:
        narrow = conv_net(count)
        flops_ratio = count_flops(narrow).total / dense_flops
        latency = compare_serving_latency(dense, narrow, flops_ratio, **TIMING)
        points.append({"inner_channels": count, "flops_ratio": flops_ratio, "serving_latency": latency})
        print(f"[bench] inner channels {count:2d} (FLOPs {flops_ratio:.3f}): " + "; ".join(
            f"{batch}: {latency[batch]['dense_ms']:.2f} -> {latency[batch]['pruned_ms']:.2f} ms "
            f"({latency[batch]['ratio']:.2f}x)" for batch in ("batch_1", "batch_32")), flush=True)
    path = os.path.join(results_dir(args.quick), "channel_counts.json")
    write_json(path, {"benchmark": "channel_counts", "width": 16, "depth": 6, "timing": dict(TIMING),
                      "points": points, "total_seconds": time.perf_counter() - started, **_environment()})
    print(f"[bench] wrote {path}")


if __name__ == "__main__":
    main()
