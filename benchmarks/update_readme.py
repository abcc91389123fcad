"""Regenerates the README's results section from benchmarks/results/*.json.

Everything between the `<!-- results:start -->` and `<!-- results:end -->` markers is
rewritten; nothing in it is typed by hand. Run: python benchmarks/update_readme.py
"""

import glob
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _load(name):
    path = os.path.join(RESULTS, name)
    return json.load(open(path)) if os.path.exists(path) else None


def _mega(x):
    return f"{x / 1e9:.2f} G" if x >= 1e9 else f"{x / 1e6:.2f} M"


def surgery_section(result):
    if not result:
        return []
    return [
        "**Surgery on ResNet-50** (`benchmarks/surgery.py`, keras.applications ResNet50 at 224x224, "
        "50% of every block-internal channel group removed):",
        "",
        "| analyse + prune | FLOPs dense -> pruned | FLOPs ratio | batch-1 CPU latency dense -> pruned | latency ratio | latency ratio / FLOPs ratio |",
        "|---|---|---|---|---|---|",
        f"| {result['analyse_seconds'] + result['prune_seconds']:.2f} s "
        f"| {_mega(result['flops']['dense'])} -> {_mega(result['flops']['pruned'])} MACs "
        f"| {result['flops']['ratio']:.3f} "
        f"| {result['latency_batch1_ms']['dense']['median_ms']:.1f} -> {result['latency_batch1_ms']['pruned']['median_ms']:.1f} ms "
        f"| {result['latency_ratio']:.3f} | {result['latency_ratio_over_flops_ratio']:.2f} |",
        "",
        "Latency is the median of repeated batch-1 calls on this 2-core CPU, with BatchNorm folded into "
        f"the convolutions as deployment does (unfolded Keras models: ratio {result['latency_batch1_ms_unfolded_bn']['ratio']:.3f}).",
        "",
    ]


def method_rows():
    rows = []
    for path in sorted(glob.glob(os.path.join(RESULTS, "*_*.json"))):
        result = json.load(open(path))
        if "baseline" not in result or "method" not in result:
            continue
        b, p = result["baseline"], result["pruned"]
        rows.append(
            f"| `{result['method']}` | {result['model']} | {result['dataset']} "
            f"| {100 * b['accuracy']:.2f} -> {100 * p['accuracy']:.2f} "
            f"| {_mega(b['flops'])} -> {_mega(p['flops'])} ({result['flops_ratio']:.3f}) "
            f"| {b['params']:,} -> {p['params']:,} "
            f"| {b['latency_ms']:.2f} -> {p['latency_ms']:.2f} "
            f"| {result['search_seconds']:.1f} s |"
        )
    if not rows:
        return []
    return [
        "**Methods on the embedded data** (mnist5k test split, this 2-core CPU):",
        "",
        "| method | model | data | accuracy % dense -> pruned | MACs (ratio) | params | batch-1 latency ms | search time |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def main():
    readme = os.path.join(ROOT, "README.md")
    text = open(readme).read()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    body = surgery_section(_load("surgery.json")) + method_rows()
    new = head + START + "\n" + "\n".join(body) + "\n" + END + tail
    with open(readme + ".tmp", "w") as f:
        f.write(new)
    os.replace(readme + ".tmp", readme)
    print("README results section regenerated from", RESULTS)


if __name__ == "__main__":
    main()
