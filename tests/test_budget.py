"""FLOPs budgets: the uniform rule of `l1` and the global ranking of `scratch` and `slimming`."""

import keras
import numpy as np
import pytest

from keras_prune.errors import PruneError
from keras_prune.graph import analyze, count_flops, expand_channels
from keras_prune.methods.budget import (
    check_reachable,
    global_budget,
    min_reachable_ratio,
    next_count,
    round_count,
    top_channels,
    uniform_budget,
)
from keras_prune.methods.l1 import select_groups
from keras_prune.models import get_model


@pytest.fixture(scope="module")
def resnet20():
    model = get_model("resnet20", (32, 32, 3), 10, seed=0)
    return model, analyze(model)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.8])
def test_global_budget_meets_the_target_within_one_percent(resnet20, rng, target):
    model, graph = resnet20
    groups = select_groups(graph, prune_residual=True)
    scores = {g.id: rng.random(g.size) for g in groups}
    result = global_budget(graph, groups, scores, target)
    assert abs(result["ratio"] - target) <= 0.01 * target
    assert result["ratio"] == pytest.approx(count_flops(model, result.keep, graph=graph).total / count_flops(model).total)
    assert all(len(result.keep[g.id]) >= 1 for g in groups)


def test_global_budget_is_one_ranking_across_groups(resnet20):
    model, graph = resnet20
    groups = select_groups(graph)
    # Group i's channels all score i: the later groups are kept first, whole.
    scores = {g.id: np.full(g.size, float(i)) for i, g in enumerate(groups)}
    result = global_budget(graph, groups, scores, 0.6)
    kept = [result["counts"][g.id] / g.size for g in groups]
    assert kept == sorted(kept), "a higher-scored group is never cut before a lower-scored one"
    assert kept[-1] == 1.0 and kept[0] < 1.0


def test_global_budget_keeps_the_best_channel_of_a_group_it_would_empty(resnet20):
    model, graph = resnet20
    groups = select_groups(graph)
    scores = {g.id: np.linspace(0, 1, g.size) + (100.0 if i else 0.0) for i, g in enumerate(groups)}
    result = global_budget(graph, groups, scores, min_reachable_ratio(graph, groups) + 0.01)
    first = groups[0]
    assert list(result.keep[first.id]) == [first.size - 1], "its single best channel"


def test_global_budget_can_measure_against_another_reference(resnet20):
    model, graph = resnet20
    groups = select_groups(graph)
    scores = {g.id: np.ones(g.size) for g in groups}
    full = count_flops(model).total
    result = global_budget(graph, groups, scores, 1.2, reference_flops=full // 2)
    assert abs(result["ratio"] - 1.2) <= 0.012
    assert result["ratio"] == pytest.approx(count_flops(model, result.keep, graph=graph).total / (full // 2))


@pytest.mark.parametrize("budget", [uniform_budget, global_budget])
def test_an_unreachable_target_names_the_minimum(resnet20, budget):
    model, graph = resnet20
    groups = select_groups(graph)
    floor = min_reachable_ratio(graph, groups)
    scores = {g.id: np.ones(g.size) for g in groups}
    with pytest.raises(PruneError, match=f"smallest reachable value is {floor:.4f}"):
        budget(graph, groups, scores, floor / 2)


def test_no_prunable_groups_is_a_clear_error(resnet20):
    model, graph = resnet20
    with pytest.raises(PruneError, match="no prunable channel group: .*pass --prune_residual"):
        global_budget(graph, [], {}, 0.5)


def test_a_model_whose_channels_are_all_frozen_names_why():
    import keras

    inputs = keras.Input((6,))
    graph = analyze(keras.Model(inputs, keras.layers.Dense(3, name="logits")(inputs)))
    with pytest.raises(PruneError, match=r"every channel is frozen .*model output \(output shape must not change\)"):
        check_reachable(graph, [], 0.5)


@pytest.mark.parametrize("target,seed", [(0.3, 3), (0.5, 2), (0.7, 0)])
def test_global_budget_fills_the_margin_a_coarse_channel_leaves(target, seed):
    # Expanded VGG x0.25 on 28x28: one early channel costs ~1% of the reference FLOPs,
    # so the two counts around the target miss it by up to 0.6% (measured); filling the
    # margin with the next-ranked channels that fit lands within 0.05%.
    model = get_model("vgg16", (28, 28, 1), 10, seed=0, width=0.25)
    reference = count_flops(model).total
    expanded = expand_channels(model, 1.25)
    graph = analyze(expanded)
    groups = select_groups(graph)
    rng = np.random.default_rng(seed)
    # Gate-like scores: a quarter exactly zero, early layers higher.
    scores = {
        g.id: np.clip(rng.random(g.size) * 1.2 - 0.3, 0, 1) * (1 - i / len(groups)) for i, g in enumerate(groups)
    }
    coarse = global_budget(graph, groups, scores, target, reference_flops=reference, refine=0)
    result = global_budget(graph, groups, scores, target, reference_flops=reference)
    assert abs(coarse["ratio"] - target) > 0.002 * target, "the case must be one the bisection alone misses"
    assert abs(result["ratio"] - target) <= 0.0005 * target


@pytest.mark.parametrize(
    "count,size,round_to,expected",
    [
        (5, 16, 1, 5),
        (0, 16, 1, 1),  # never below one channel
        (3, 16, 8, 8),  # never below round_to
        (11, 16, 8, 8),
        (12, 16, 8, 16),  # ties round up
        (9, 20, 8, 8),
        (19, 20, 8, 20),  # the whole group is an allowed count
        (17, 20, 8, 16),
        (3, 6, 8, 6),  # a group no larger than round_to stays whole
    ],
)
def test_round_count_goes_to_the_nearest_allowed_count(count, size, round_to, expected):
    assert round_count(count, size, round_to) == expected


def test_round_count_is_monotone_and_next_count_steps_to_the_next_allowed_count():
    for size in (6, 8, 20, 64):
        rounded = [round_count(n, size, 8) for n in range(0, size + 3)]
        assert rounded == sorted(rounded)
        assert all(c == size or c % 8 == 0 for c in rounded)
    assert next_count(8, 20, 8) == 16 and next_count(16, 20, 8) == 20 and next_count(20, 20, 8) == 20
    assert next_count(5, 20, 1) == 6


def _allowed(count, size, round_to):
    return count == size or count % round_to == 0


@pytest.mark.parametrize("budget", [uniform_budget, global_budget])
@pytest.mark.parametrize("target", [0.4, 0.7])
def test_round_to_keeps_multiples_of_it_and_still_aims_at_the_target(resnet20, rng, budget, target):
    model, graph = resnet20  # ResNet-20 at full width: groups of 16, 32 and 64 channels
    groups = select_groups(graph, prune_residual=True)
    scores = {g.id: rng.random(g.size) for g in groups}
    exact = budget(graph, groups, scores, target)
    rounded = budget(graph, groups, scores, target, round_to=8)
    kept = {g.id: len(rounded.keep[g.id]) for g in groups}
    assert all(_allowed(kept[g.id], g.size, 8) for g in groups), kept
    assert any(len(exact.keep[g.id]) % 8 for g in groups), "the case must be one rounding changes"
    assert rounded["ratio"] == pytest.approx(count_flops(model, rounded.keep, graph=graph).total / count_flops(model).total)
    assert abs(rounded["ratio"] - target) <= 0.05 * target
    if budget is global_budget:
        assert rounded["counts"] == kept
        for g in groups:  # each group keeps its own best channels
            np.testing.assert_array_equal(rounded.keep[g.id], top_channels(scores[g.id], kept[g.id]))


def test_round_to_raises_the_smallest_reachable_budget(resnet20):
    model, graph = resnet20
    groups = select_groups(graph)
    floor, rounded_floor = min_reachable_ratio(graph, groups), min_reachable_ratio(graph, groups, round_to=8)
    assert rounded_floor > floor
    scores = {g.id: np.ones(g.size) for g in groups}
    with pytest.raises(PruneError, match=r"keeping 8 channels \(--round_to; a smaller group stays whole\).*smallest reachable value is"):
        global_budget(graph, groups, scores, (floor + rounded_floor) / 2, round_to=8)
    with pytest.raises(PruneError, match="round_to must be a whole number >= 1"):
        uniform_budget(graph, groups, scores, 0.5, round_to=0)


@pytest.mark.parametrize("target", [0.3, 0.5])
def test_margin_filling_with_round_to_grows_groups_by_allowed_steps_only(target):
    # Expanded VGG x0.25: groups of 20, 40, 80 and 160 channels, 20 not a multiple of 8.
    model = get_model("vgg16", (28, 28, 1), 10, seed=0, width=0.25)
    reference = count_flops(model).total
    graph = analyze(expand_channels(model, 1.25))
    groups = select_groups(graph)
    rng = np.random.default_rng(1)
    scores = {g.id: rng.random(g.size) * (1 - i / len(groups)) for i, g in enumerate(groups)}
    coarse = global_budget(graph, groups, scores, target, reference_flops=reference, refine=0, round_to=8)
    result = global_budget(graph, groups, scores, target, reference_flops=reference, round_to=8)
    assert all(_allowed(result["counts"][g.id], g.size, 8) for g in groups), result["counts"]
    assert any(g.size % 8 for g in groups)
    assert abs(result["ratio"] - target) <= abs(coarse["ratio"] - target)
    assert abs(result["ratio"] - target) <= 0.01 * target


def test_groups_tied_by_a_shared_layer_alone_name_both_causes():
    from keras_prune.methods.budget import check_reachable

    shared = keras.layers.Conv2D(4, 3, padding="same")
    inputs = keras.Input((8, 8, 4))
    x = shared(shared(keras.layers.Conv2D(4, 3, padding="same")(inputs)))  # no addition anywhere
    graph = analyze(keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x))))
    assert graph.prunable_groups and all(len(g.producers) > 1 for g in graph.prunable_groups)
    with pytest.raises(PruneError, match="several producers.*called more than once.*--prune_residual"):
        check_reachable(graph, [], 0.5)


def test_a_budget_more_than_one_percent_off_target_is_warned_about():
    from keras_prune.methods.budget import off_target_warning

    assert off_target_warning("l1", 0.504, 0.5) is None
    warning = off_target_warning("l1", 0.5735, 0.5, round_to=8)
    assert warning.startswith("l1: warning: 0.5735") and "14.7% off --target_flops=0.5" in warning
    assert "smaller --round_to" in warning and "round_to" not in off_target_warning("l1", 0.5735, 0.5)
