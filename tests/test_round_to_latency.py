"""benchmarks/round_to_latency.py: both structures it times meet the same FLOPs target, one rounded."""

import pytest

from keras_prune.graph import analyze, count_flops
from keras_prune.methods.l1 import select_groups
from keras_prune.models import get_model

from conftest import load_benchmark

round_to_latency = load_benchmark("round_to_latency")


def test_the_rounded_structure_keeps_multiples_of_8_at_about_the_same_flops():
    model = get_model("resnet20", (28, 28, 1), 10, width=1.0, seed=0)
    graph = analyze(model)
    groups = select_groups(graph)
    full = count_flops(model).total
    exact, exact_ratio, exact_counts = round_to_latency._prune(model, graph, groups, 0.5, 1)
    rounded, rounded_ratio, rounded_counts = round_to_latency._prune(model, graph, groups, 0.5, 8)
    assert any(c % 8 for c in exact_counts), "the case must be one rounding changes"
    assert all(c % 8 == 0 for c in rounded_counts)
    assert count_flops(rounded).total / full == pytest.approx(rounded_ratio)
    assert abs(rounded_ratio - 0.5) <= 0.05 and abs(exact_ratio - 0.5) <= 0.01
    convs = [layer.filters for layer in rounded.layers if hasattr(layer, "filters")]
    assert sorted(set(convs)) == sorted(set(convs) & {8, 16, 24, 32, 40, 48, 56, 64})
