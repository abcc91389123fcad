"""benchmarks/update_readme.py: the README's results section is generated from the results files."""

import json

import pytest

from conftest import load_benchmark

update_readme = load_benchmark("update_readme")


def _sweep(**extra):
    passed = {"model": "ResNet50", "input_size": 32, "passed": True, "prunable_groups": 16,
              "prunable_channel_share": 0.5, "flops": {"ratio": 0.61}, "params": {"ratio": 0.6}, "seconds": 12.0}
    failed = {"model": "Broken", "input_size": 32, "passed": False, "failed_stage": "equal",
              "reason": "AssertionError: a | b", "prunable_groups": 3, "prunable_channel_share": 0.25, "seconds": 5.0}
    return {"models": {"ResNet50": passed, "Broken": failed}, "versions": {"keras": "3.x"}, "prune_fraction": 0.3,
            **extra}


def test_the_sweep_table_lists_passes_and_failures_with_the_stage_and_reason(tmp_path, monkeypatch):
    (tmp_path / "applications_sweep.json").write_text(json.dumps(_sweep(batch_norm="fitted statistics")))
    monkeypatch.setattr(update_readme, "RESULTS", str(tmp_path))
    lines = update_readme.sweep_section()
    assert "**1 of 2 pass**; fail: Broken." in lines[0] and "(BatchNorm: fitted statistics)" in lines[0]
    assert "| ResNet50 | 32 | pass | 16 | 50% | 0.610 | 0.600 | 12 s |" in lines
    assert "| Broken | 32 | **fail** at `equal`: AssertionError: a / b | 3 | 25% | | | 5 s |" in lines


def test_a_sweep_file_without_the_batch_norm_field_says_nothing_about_it(tmp_path, monkeypatch):
    (tmp_path / "applications_sweep.json").write_text(json.dumps(_sweep()))
    monkeypatch.setattr(update_readme, "RESULTS", str(tmp_path))
    assert "BatchNorm" not in update_readme.sweep_section()[0]


def test_no_sweep_file_no_section(tmp_path, monkeypatch):
    monkeypatch.setattr(update_readme, "RESULTS", str(tmp_path))
    assert update_readme.sweep_section() == []


def test_the_resolution_note_is_computed_from_the_test_split():
    note = update_readme._resolution_note(accuracy=0.97)[0]
    assert "1,000 images" in note and "one image is 0.1 pp" in note and "is 0.5 pp" in note


def _lstm(seed, lstm, l1):
    arm = {"flops_ratio": 0.3, "params": 100, "structures_evaluated": 4, "controller_epochs": 2, "search_seconds": 60.0}
    return {"benchmark": "lstm_vs_l1", "model": "vgg16", "width": 0.25, "dense_test_accuracy": 0.98,
            "paper_flops_reduction": 0.7, "lstm_flops_reduction": 0.7, "lstm_accuracy_loss_pp": 100 * (0.98 - lstm),
            "accuracy_lstm_minus_l1_pp": 100 * (lstm - l1), "total_seconds": 600.0, "settings": {"seed": seed},
            "results": {"lstm": dict(arm, test_accuracy=lstm), "l1": dict(arm, test_accuracy=l1)}}


def test_repeats_under_other_seeds_go_to_the_seed_table_not_the_method_tables(tmp_path, monkeypatch):
    (tmp_path / "lstm_vs_l1_vgg16.json").write_text(json.dumps(_lstm(0, 0.980, 0.975)))
    (tmp_path / "lstm_vs_l1_vgg16_seed1.json").write_text(json.dumps(_lstm(1, 0.970, 0.975)))
    monkeypatch.setattr(update_readme, "RESULTS", str(tmp_path))
    method_rows = [line for line in update_readme.lstm_section() if line.startswith("| vgg16")]
    assert len(method_rows) == 1 and "+0.50 pp" in method_rows[0], "the seed-0 run only"
    seeds = update_readme.seeds_section()
    assert any("| `lstm` | `l1` | vgg16 x0.25 | 0, 1 | **+0.00 ± 0.71**" in line for line in seeds)
    assert any("| `lstm` | dense | vgg16 x0.25 | 0, 1 | **-0.50 ± 0.71**" in line for line in seeds)
    assert "the next table gives the comparisons repeated with other seeds" in " ".join(update_readme.summary_section())


def test_no_repeats_no_seed_table(tmp_path, monkeypatch):
    (tmp_path / "lstm_vs_l1_vgg16.json").write_text(json.dumps(_lstm(0, 0.980, 0.975)))
    monkeypatch.setattr(update_readme, "RESULTS", str(tmp_path))
    assert update_readme.seeds_section() == []
    assert "repeated with other seeds" not in " ".join(update_readme.summary_section())


def test_lstm_rows_label_single_final_trainings_and_give_the_spread_of_repeated_ones(tmp_path, monkeypatch):
    old = _lstm(0, 0.980, 0.975)  # written before --final_repeats existed: one final training per arm
    repeated = _lstm(0, 0.980, 0.975)
    repeated["model"], repeated["settings"] = "resnet20", {"seed": 0, "final_repeats": 3}
    repeated["accuracy_lstm_minus_l1_pp_per_repeat"] = [0.2, 0.5, 0.8]
    (tmp_path / "lstm_vs_l1_vgg16.json").write_text(json.dumps(old))
    (tmp_path / "lstm_vs_l1_resnet20.json").write_text(json.dumps(repeated))
    monkeypatch.setattr(update_readme, "RESULTS", str(tmp_path))
    rows = {line.split(" ")[1]: line for line in update_readme.lstm_section() if line.startswith("| ")}
    assert "--final_repeats 1" in rows["vgg16"] and "(sd" not in rows["vgg16"]
    assert "--final_repeats" not in rows["resnet20"], "3 is the default: not labelled"
    assert "+0.50 pp (sd 0.30 over 3)" in rows["resnet20"]


def _scratch(repeats):
    """A scratch_vs_slimming result with `repeats` final trainings per arm (1: the older files' form)."""
    accuracies = {"scratch": [0.97, 0.98], "scratch_b": [0.972, 0.988], "slimming": [0.975, 0.983], "l1": [0.971, 0.991]}
    arms = {}
    for name, values in accuracies.items():
        values = values[:repeats]
        arms[name] = {"test_accuracy": sum(values) / len(values), "flops_ratio": 0.5, "params": 100,
                      "search_seconds": 5.0, "search_epochs": 2, "final_training_seconds": 30.0, "pretrain_seconds": 60.0,
                      **({"test_accuracies": values} if repeats > 1 else {})}
    result = {"benchmark": "scratch_vs_slimming", "model": "resnet20", "width": 0.5, "dense_test_accuracy": 0.98,
              "target_flops": 0.5, "settings": {"seed": 0, "final_epochs": 30}, "results": arms,
              "search_time_ratio_slimming_over_scratch": 10.0, "total_seconds": 600.0}
    for method, baseline in (("scratch", "slimming"), ("scratch", "l1"), ("scratch_b", "slimming"), ("scratch_b", "l1")):
        key = f"accuracy_{method}_minus_{baseline}_pp"
        result[key] = 100 * (arms[method]["test_accuracy"] - arms[baseline]["test_accuracy"])
        if repeats > 1:
            result[f"{key}_per_repeat"] = [
                100 * (a - b) for a, b in zip(accuracies[method], accuracies[baseline])
            ]
    return result


@pytest.mark.parametrize("repeats", [1, 2])
def test_scratch_rows_say_when_accuracies_are_means_of_repeated_final_trainings(tmp_path, monkeypatch, repeats):
    (tmp_path / "scratch_vs_slimming_resnet20.json").write_text(json.dumps(_scratch(repeats)))
    monkeypatch.setattr(update_readme, "RESULTS", str(tmp_path))
    lines = update_readme.scratch_section()
    scratch_row = next(line for line in lines if "| `scratch` |" in line)
    summary_row = next(line for line in lines if "slimming / scratch" in line)
    budget_row = next(line for line in lines if "`scratch_b` - slimming" in line)
    if repeats == 1:
        assert "| 97.00 |" in scratch_row and "mean of" not in scratch_row
        assert "scratch - slimming -0.50 pp, scratch - l1 -0.10 pp |" in summary_row
        assert "`scratch_b` - slimming -0.30 pp, `scratch_b` - l1 +0.10 pp |" in budget_row
    else:
        # each difference beside its own spread: the four spreads differ, so a swapped key shows
        assert "| 97.50 (mean of 2) |" in scratch_row
        assert "scratch - slimming -0.40 pp (sd 0.14 over 2), scratch - l1 -0.60 pp (sd 0.71 over 2) |" in summary_row
        assert "`scratch_b` - slimming +0.10 pp (sd 0.57 over 2), `scratch_b` - l1 -0.10 pp (sd 0.28 over 2) |" in (
            budget_row
        )


def _olmp(delta, **settings):
    return {"benchmark": "olmp_vs_tfmot", "model": "lenet300_100", "dense_test_accuracy": 0.95, "total_seconds": 400.0,
            "olmp": {"compression": 150.0, "test_accuracy": 0.951, "iterations": 30001, "search_seconds": 100.0,
                     "train_seconds": 200.0},
            "olmp_settings": {"olmp_delta": delta, "seed": 0, **settings}, "tfmot_best": None, "olmp_over_tfmot_compression": None,
            "tfmot": {"sweep": []}}


def test_an_olmp_run_off_its_recipe_says_how(tmp_path, monkeypatch):
    (tmp_path / "olmp_vs_tfmot_lenet300_100.json").write_text(json.dumps(_olmp(0.08)))  # the recipe's settings
    (tmp_path / "olmp_vs_tfmot_lenet300_100_delta005.json").write_text(json.dumps(_olmp(0.05)))
    (tmp_path / "olmp_vs_tfmot_lenet300_100_heldout.json").write_text(json.dumps(_olmp(
        0.04, olmp_constraint="validation", olmp_constraint_examples=256, olmp_crate_bounds="0,7")))
    (tmp_path / "olmp_vs_tfmot_lenet300_100_same.json").write_text(json.dumps(_olmp(
        0.08, olmp_constraint="batch", olmp_crate_bounds="0,10")))
    monkeypatch.setattr(update_readme, "RESULTS", str(tmp_path))
    rows = [line for line in update_readme.olmp_section() if line.startswith("| lenet300_100")]
    assert len(rows) == 4
    assert "| 30,001 it., 5.0 min |" in rows[0]
    assert "| 30,001 it., delta 0.05, 5.0 min |" in rows[1]
    assert "| 30,001 it., delta 0.04, held-out constraint (256 examples), c in [0, 7], 5.0 min |" in rows[2]
    assert "| 30,001 it., 5.0 min |" in rows[3]


def test_the_latency_section_shows_every_round_to_timing_and_nothing_without_files():
    assert update_readme.latency_section(None, None) == []
    point = {"model": "vgg16", "width": 0.25, "target_flops": 0.5, "flops_ratio": 0.4991, "counts": [8, 16, 24],
             "groups_off_a_multiple_of_8": 0, "latency_ratio": {"batch_1": 0.81, "batch_32": 0.73},
             "latency_ratio_rounds": {"batch_1": [0.75, 0.88, 0.81], "batch_32": [0.74, 0.73, 0.70]}}
    rounding = {"round_to": 8, "rounds": 3, "points": [dict(point, round_to=8)]}
    lines = update_readme.latency_section(None, rounding)
    row = next(line for line in lines if line.startswith("| vgg16"))
    assert row == "| vgg16 x0.25 | 0.5 | 8 | 0.499 | 0 of 3 | 0.81 (0.75, 0.88, 0.81) | 0.73 (0.74, 0.73, 0.70) |"
    counts = {"depth": 6, "width": 16, "points": [
        {"inner_channels": 9, "flops_ratio": 0.5625, "serving_latency": {"batch_1": {"ratio": 1.01}, "batch_32": {"ratio": 1.08}}}]}
    assert "| 9 | 0.562 | 1.01 | 1.08 |" in update_readme.latency_section(counts, None)


def test_a_run_with_round_to_a_pruned_residual_stream_or_another_expansion_is_labelled_as_such():
    assert update_readme._structure_variant({"settings": {"round_to": 8}}) == ", round_to 8"
    assert update_readme._structure_variant({"settings": {"round_to": 1}}) == ""
    assert update_readme._structure_variant({"settings": {}}) == "", "runs from before --round_to"
    assert update_readme._structure_variant({"settings": {"round_to": 1, "prune_residual": True}}) == ", residual pruned"
    assert update_readme._structure_variant({"settings": {"round_to": 8, "prune_residual": True}}) == (
        ", round_to 8, residual pruned"
    )
    assert update_readme._structure_variant({"settings": {"prune_residual": False}}) == ""
    assert update_readme._structure_variant({"settings": {"expansion": 1.0}}) == ", expansion 1"
    assert update_readme._structure_variant({"settings": {"expansion": 1.25}}) == "", "the default width"


def test_an_lstm_run_sized_off_the_benchmark_defaults_says_how():
    default = {"train_epochs": 15, "children": 2, "controller_epochs": 10, "round_to": 8, "final_repeats": 3}
    assert update_readme._sizing({"settings": default}) == ""
    sized = {**default, "children": 1, "train_epochs": 10, "controller_epochs": 15}
    assert update_readme._sizing({"settings": sized}) == ", --train_epochs 10, --children 1, --controller_epochs 15"
    assert update_readme._sizing({"settings": {**default, "reward": "target"}}) == ", --reward target"


def test_a_latency_ratio_below_one_reads_as_slower_not_as_a_fraction_faster():
    assert update_readme._speed(1.07) == "**1.07x** faster"
    assert update_readme._speed(0.8) == "**1.25x** slower"


def test_a_difference_that_rounds_to_zero_has_no_minus_sign():
    assert update_readme._pp(-0.000001) == "+0.00"
    assert update_readme._pp(-0.3) == "-0.30" and update_readme._pp(0.7) == "+0.70"


def _rnp_result(**extra):
    point = {"flops_bias": 0.0, "accuracy": 0.98, "speedup": 3.3, "mean_flops": 1.0e6}
    return {"settings": {"model": "conv4", "width": 2.0}, "machine": {"cpus": 2},
            "dense": {"accuracy": 0.986, "flops": 48e6, "latency_ms": 1.58},
            "latency": {"flops_bias": 0.0, "speedup_macs": 3.3, "rnp_ms": 1.84, "latency_speedup": 1.58 / 1.84},
            "static": [{"rnp_flops_bias": 0.0, "accuracy": 0.975}], "rnp_wins": "1 of 1",
            "rnp": {"points": [point], "train_seconds": 120.0}, **extra}


def test_the_rnp_section_says_slower_and_gives_the_forced_latency_parts_when_measured():
    text = "\n".join(update_readme.rnp_section(_rnp_result()))
    assert "**1.16x** slower" in text and "Forced by the bias" not in text
    parts = {"dense_ms": 1.516, "all_groups_ms": 2.097, "fewest_groups_ms": 1.287, "repeats": 200}
    text = "\n".join(update_readme.rnp_section(_rnp_result(latency_parts=parts)))
    assert "every group computed **2.097 ms**, the fewest (one group per layer) **1.287 ms**, dense 1.516 ms" in text


def test_a_latency_remeasured_once_says_once():
    before = {"latency_speedup": 0.86}
    text = "\n".join(update_readme.rnp_section(_rnp_result(latency_remeasured=[{"before": before}])))
    assert "Re-measured once since" in text and "0.86x" in text


@pytest.mark.parametrize("markers", [(update_readme.START,), (update_readme.END,), ()])
def test_a_readme_without_both_markers_once_is_left_alone(tmp_path, monkeypatch, markers):
    text = "# Title\n" + "\n".join(markers) + "\n## After the results\n"
    (tmp_path / "README.md").write_text(text)
    monkeypatch.setattr(update_readme, "ROOT", str(tmp_path))
    with pytest.raises(SystemExit, match="exactly once"):
        update_readme.main()
    assert (tmp_path / "README.md").read_text() == text


def test_the_sweep_says_it_checked_the_folded_saved_model_only_when_every_pass_did(tmp_path, monkeypatch):
    monkeypatch.setattr(update_readme, "RESULTS", str(tmp_path))
    sweep = _sweep()
    (tmp_path / "applications_sweep.json").write_text(json.dumps(sweep))
    assert "SavedModel round trip" in update_readme.sweep_section()[0]
    sweep["models"]["ResNet50"]["saved_model"] = "batch_norm_folded"
    (tmp_path / "applications_sweep.json").write_text(json.dumps(sweep))
    assert "BatchNorm folding exact (float64), the SavedModel a run ships (folded)" in update_readme.sweep_section()[0]


def test_the_readme_gets_the_summary_and_docs_results_every_run(tmp_path, monkeypatch):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "lstm_vs_l1_vgg16.json").write_text(json.dumps(_lstm(0, 0.980, 0.975)))
    (results / "lstm_vs_l1_vgg16_seed1.json").write_text(json.dumps(_lstm(1, 0.970, 0.975)))
    (results / "applications_sweep.json").write_text(json.dumps(_sweep()))
    (results / "accuracy_vs_cost.png").write_bytes(b"")
    (tmp_path / "README.md").write_text(f"# Title\n{update_readme.START}\nold\n{update_readme.END}\n## After\n")
    monkeypatch.setattr(update_readme, "ROOT", str(tmp_path))
    monkeypatch.setattr(update_readme, "RESULTS", str(results))
    update_readme.main()
    readme = (tmp_path / "README.md").read_text()
    full = (tmp_path / "docs" / "results.md").read_text()
    assert readme.startswith("# Title\n") and readme.endswith(f"{update_readme.END}\n## After\n") and "old" not in readme
    for text in (readme, full):  # both carry the seeds table, the method table and the sweep's verdict
        assert "**Across seeds**" in text and "**Where to Prune vs uniform L1" in text and "**1 of 2 pass**" in text
    assert "**Every pruned model, one table**" in full and "**Every pruned model" not in readme
    assert "| Broken |" in full and "| Broken |" not in readme, "the sweep's per-model rows live in docs/results.md"
    assert "[docs/results.md](docs/results.md) lists every pruned model" in readme
    assert "](benchmarks/results/accuracy_vs_cost.png)" in readme
    assert "](../benchmarks/results/accuracy_vs_cost.png)" in full and "](benchmarks/" not in full
