"""benchmarks/structure_or_weights.py: rebuilding a scratch_vs_slimming arm's structure from the
per-layer channel counts its results file records."""

import json
import os

import pytest

from conftest import BENCHMARKS, load_benchmark
from keras_prune.graph import analyze, count_flops, prune_channels
from keras_prune.models import get_model

structure_or_weights = load_benchmark("structure_or_weights")

RECORDED = os.path.join(BENCHMARKS, "results", "scratch_vs_slimming_resnet20_long64.json")


@pytest.mark.parametrize("arm", ["slimming", "l1"])
def test_recorded_counts_rebuild_the_recorded_structure(arm):
    with open(RECORDED) as f:
        recorded = json.load(f)
    settings = recorded["settings"]
    model = get_model(settings["model"], (28, 28, 1), 10, width=settings["width"], seed=0)
    graph = analyze(model)
    structure = prune_channels(model, structure_or_weights.structure_keep(graph, recorded["results"][arm]["layers"]))
    assert count_flops(structure).total == recorded["results"][arm]["flops"]
    widths = {layer.name: layer.filters for layer in structure.layers if hasattr(layer, "filters")}
    for layer in recorded["results"][arm]["layers"]:
        if layer["name"] in widths:
            assert widths[layer["name"]] == layer["channels_after"], layer["name"]


def test_producers_recorded_with_different_counts_are_refused():
    model = get_model("resnet20", (28, 28, 1), 10, width=0.25, seed=0)
    graph = analyze(model)
    tied = next(g for g in graph.prunable_groups if len(g.producers) > 1)
    layers = [{"name": name, "channels_after": i + 1} for i, name in enumerate(tied.producers)]
    with pytest.raises(ValueError, match="different recorded counts"):
        structure_or_weights.structure_keep(graph, layers)


def test_settings_of_a_file_that_predates_later_flags_take_their_defaults():
    with open(os.path.join(BENCHMARKS, "results", "scratch_vs_slimming_resnet20.json")) as f:
        recorded = json.load(f)
    assert "final_repeats" not in recorded["settings"] and "round_to" not in recorded["settings"]
    args = structure_or_weights.recorded_settings(recorded)
    assert (args.final_repeats, args.round_to, args.expansion, args.prune_residual) == (1, 1, 1.25, False)
    assert args.seed == recorded["settings"]["seed"] and args.final_epochs == recorded["settings"]["final_epochs"]
