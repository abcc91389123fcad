"""benchmarks/tabulate_results.py: every results file becomes rows of one table, and what a
file did not measure is shown as not measured, never filled in."""

import json

from conftest import load_benchmark

tabulate_results = load_benchmark("tabulate_results")

LAYERS = [{"name": "conv1", "channels_before": 8, "channels_after": 4, "flops_before": 100, "flops_after": 50,
           "sparsity": 0.5},
          {"name": "fc", "channels_before": 10, "channels_after": 10, "flops_before": 10, "flops_after": 5,
           "sparsity": 0.5}]
SERVING = {"batch_1": {"dense_ms": 2.0, "pruned_ms": 1.0, "ratio": 0.5, "ratio_over_flops_ratio": 1.0, "repeats": 5},
           "batch_32": {"dense_ms": 40.0, "pruned_ms": 25.0, "ratio": 0.625, "ratio_over_flops_ratio": 1.25,
                        "repeats": 5}}


def _write(folder, name, result):
    (folder / name).write_text(json.dumps(result))


def _scratch_result(with_evidence):
    arm = {"test_accuracy": 0.97, "flops_ratio": 0.5, "params": 1000, "search_seconds": 12.0}
    if with_evidence:
        arm.update(dense_params=4000, nonzero_params=1000, serving_latency=SERVING, layers=LAYERS)
    return {"benchmark": "scratch_vs_slimming", "model": "resnet20", "width": 0.5, "dense_test_accuracy": 0.96,
            "results": {"scratch": arm, "slimming": dict(arm, test_accuracy=0.98, search_seconds=300.0)}}


def test_rows_read_every_arm_and_mark_what_was_not_measured(tmp_path):
    _write(tmp_path, "scratch_vs_slimming_resnet20.json", _scratch_result(with_evidence=True))
    _write(tmp_path, "scratch_vs_slimming_vgg16.json", dict(_scratch_result(with_evidence=False), model="vgg16"))
    _write(tmp_path, "run_all.json", {"jobs": {}})  # not a results file: skipped
    table = tabulate_results.rows(str(tmp_path))
    assert [(r["model"], r["method"]) for r in table] == [
        ("resnet20 x0.5", "scratch"), ("resnet20 x0.5", "slimming"), ("vgg16 x0.5", "scratch"), ("vgg16 x0.5", "slimming")]
    assert table[0]["compression"] == 4.0
    lines = tabulate_results.markdown_table(table)
    assert len(lines) == 2 + len(table)
    measured, unmeasured = lines[2], lines[4]
    assert "2.00 -> 1.00 (0.50x)" in measured and "40.00 -> 25.00 (0.62x)" in measured
    assert "96.00 -> 97.00" in measured and "4.0 k -> 1.0 k" in measured
    assert unmeasured.count(tabulate_results.NOT_MEASURED) == 3, "both latencies and the compression"


def test_tabulate_writes_the_table_the_summary_and_the_plots(tmp_path):
    _write(tmp_path, "scratch_vs_slimming_resnet20.json", _scratch_result(with_evidence=True))
    summary = tabulate_results.tabulate(str(tmp_path))
    assert summary["plots"] == ["accuracy_vs_cost.png", "structure_scratch_vs_slimming_resnet20.png"]
    for name in ("summary.md", "summary.json", *summary["plots"]):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "`scratch`" in (tmp_path / "summary.md").read_text()
    assert len(json.loads((tmp_path / "summary.json").read_text())["rows"]) == 2


def _seeded(seed, scratch, slimming, dense=0.96):
    result = _scratch_result(with_evidence=False)
    result["dense_test_accuracy"] = dense
    result["results"]["scratch"]["test_accuracy"] = scratch
    result["results"]["slimming"]["test_accuracy"] = slimming
    result["settings"] = {"seed": seed}
    return result


def test_repeats_with_other_seeds_are_put_together_per_comparison(tmp_path):
    _write(tmp_path, "scratch_vs_slimming_resnet20.json", _seeded(0, 0.970, 0.980))
    _write(tmp_path, "scratch_vs_slimming_resnet20_seed1.json", _seeded(1, 0.975, 0.970))
    _write(tmp_path, "scratch_vs_slimming_resnet20_seed2.json", _seeded(2, 0.960, 0.965))
    _write(tmp_path, "scratch_vs_slimming_vgg16.json", dict(_seeded(0, 0.99, 0.98), model="vgg16"))
    records = tabulate_results.across_seeds(tabulate_results.rows(str(tmp_path)))
    by_stem = {r["stem"]: r for r in records}
    resnet = by_stem["scratch_vs_slimming_resnet20"]
    assert (resnet["method"], resnet["versus"], resnet["seeds"]) == ("scratch", "slimming", [0, 1, 2])
    assert all(abs(a - b) < 1e-9 for a, b in zip(resnet["differences_pp"], [-1.0, 0.5, -0.5]))
    assert abs(resnet["mean_pp"] - (-1.0 / 3)) < 1e-9
    assert abs(resnet["std_pp"] - 0.7637626158) < 1e-6  # sample standard deviation of (-1, 0.5, -0.5)
    assert by_stem["scratch_vs_slimming_vgg16"]["std_pp"] is None, "one seed has no spread"
    lines = tabulate_results.seeds_table(records)
    assert len(lines) == 3, "only the comparison repeated with several seeds"
    assert "**-0.33 ± 0.76**" in lines[2] and "-1.0, +0.5, -0.5" in lines[2]


def _rnp(static):
    return {"benchmark": "rnp_vs_static", "settings": {"model": "conv4", "width": 2.0, "seed": 3},
            "dense": {"accuracy": 0.985, "flops": 100.0}, "latency": {"flops_bias": 0.1, "dense_ms": 2.0, "rnp_ms": 1.5},
            "rnp": {"points": [{"flops_bias": 0.1, "accuracy": 0.98, "flops_ratio": 0.34}], "train_seconds": 60.0},
            "static": static}


def _rnp_records(tmp_path, static):
    _write(tmp_path, "rnp_vs_static_seed3.json", _rnp(static))
    return {(r["method"], r["versus"]): r for r in tabulate_results.across_seeds(tabulate_results.rows(str(tmp_path)))}


def test_rnp_is_compared_with_the_static_arm_built_for_its_point_and_with_dense(tmp_path):
    records = _rnp_records(tmp_path, [
        {"accuracy": 0.975, "flops": 41.0, "rnp_flops_bias": 0.05},  # the best static arm
        {"accuracy": 0.965, "flops": 34.0, "rnp_flops_bias": 0.2},  # the nearest in FLOPs
        {"accuracy": 0.960, "flops": 36.0, "rnp_flops_bias": 0.1},  # built for the RNP point at bias 0.1
    ])
    assert records[("rnp", "static l1")]["seeds"] == [3]
    assert abs(records[("rnp", "static l1")]["mean_pp"] - 2.0) < 1e-9
    assert abs(records[("rnp", "dense")]["mean_pp"] - (-0.5)) < 1e-9


def test_a_re_measured_rnp_latency_replaces_the_run_s_own_serving_latency(tmp_path):
    stale = {"batch_1": {"dense_ms": 1.58, "pruned_ms": 1.84, "ratio": 1.84 / 1.58},
             "batch_32": {"dense_ms": 9.0, "pruned_ms": 8.0, "ratio": 8.0 / 9.0}}
    _write(tmp_path, "rnp_vs_static.json", dict(_rnp([]), serving_latency=stale))
    (row,) = [r for r in tabulate_results.rows(str(tmp_path)) if r["method"] == "rnp"]
    assert row["serving_latency"] == stale, "not re-measured: the run's own serving latency"
    _write(tmp_path, "rnp_vs_static.json", dict(_rnp([]), serving_latency=stale, latency_remeasured=[{"before": {}}]))
    (row,) = [r for r in tabulate_results.rows(str(tmp_path)) if r["method"] == "rnp"]
    assert row["serving_latency"] == {"batch_1": {"dense_ms": 2.0, "pruned_ms": 1.5, "ratio": 0.75}}


def test_without_a_recorded_pairing_the_static_arm_nearest_in_flops(tmp_path):
    records = _rnp_records(tmp_path, [{"accuracy": 0.975, "flops": 41.0}, {"accuracy": 0.965, "flops": 34.0}])
    assert abs(records[("rnp", "static l1")]["mean_pp"] - 1.5) < 1e-9


def test_a_benchmark_rerun_on_another_model_is_another_comparison(tmp_path):
    _write(tmp_path, "scratch_vs_slimming_resnet20.json", _seeded(0, 0.97, 0.98))
    _write(tmp_path, "scratch_vs_slimming_resnet20_seed1.json", dict(_seeded(1, 0.97, 0.96), width=0.25))
    records = [r for r in tabulate_results.across_seeds(tabulate_results.rows(str(tmp_path)))
               if (r["method"], r["versus"]) == ("scratch", "slimming")]
    assert sorted((r["model"], r["seeds"]) for r in records) == [("resnet20 x0.25", [1]), ("resnet20 x0.5", [0])]


def test_one_structure_plot_per_benchmark_whatever_the_seeds(tmp_path):
    first = _scratch_result(with_evidence=True)
    _write(tmp_path, "scratch_vs_slimming_resnet20.json", first)
    _write(tmp_path, "scratch_vs_slimming_resnet20_seed1.json", dict(first, settings={"seed": 1}))
    summary = tabulate_results.tabulate(str(tmp_path))
    assert summary["plots"] == ["accuracy_vs_cost.png", "structure_scratch_vs_slimming_resnet20.png"]
    assert "## Across seeds" in (tmp_path / "summary.md").read_text()


def test_a_difference_that_rounds_to_zero_has_no_minus_sign():
    assert tabulate_results._signed(-0.04, 1) == "+0.0"
    assert tabulate_results._signed(-1e-15, 2) == "+0.00"
    assert tabulate_results._signed(-0.26, 1) == "-0.3"


def test_arms_with_the_same_structure_share_one_line_and_name_both():
    other = [dict(LAYERS[0], channels_after=6), LAYERS[1]]
    arms = [{"method": "scratch", "flops_ratio": 0.5, "layers": LAYERS},
            {"method": "scratch_b", "flops_ratio": 0.5, "layers": LAYERS},
            {"method": "slimming", "flops_ratio": 0.5, "layers": other},
            {"method": "l1", "flops_ratio": 0.5, "layers": LAYERS[:1]}]  # no "fc": a gap, not the same line
    lines = tabulate_results.structure_lines(arms, ["conv1", "fc"])
    assert [label for label, _, _ in lines] == ["scratch = scratch_b", "slimming", "l1"]
    assert lines[0][1] == [0.5, 1.0] and lines[1][1] == [0.75, 1.0]
    assert lines[2][1][0] == 0.5 and lines[2][1][1] != lines[2][1][1], "a layer the arm lacks is NaN"


def _olmp_result(tfmot_latency=None, source=None):
    best = {"sparsity": 0.95, "test_accuracy": 0.954, "compression": 19.4, "nonzero_params": 13700, "seconds": 7.0}
    if tfmot_latency:
        best["serving_latency"] = tfmot_latency
    if source:
        best["serving_latency_source"] = source
    return {"benchmark": "olmp_vs_tfmot", "model": "lenet300_100", "dense_test_accuracy": 0.95,
            "olmp": {"test_accuracy": 0.944, "compression": 198.7, "params": 266610, "search_seconds": 126.0,
                     "evidence": {"serving_latency": SERVING}},
            "olmp_settings": {"seed": 0}, "tfmot_best": best}


def test_a_backfilled_tfmot_latency_is_marked_and_explained(tmp_path):
    _write(tmp_path, "olmp_vs_tfmot_lenet300_100.json", _olmp_result(SERVING, source={"date": "2026-11-23"}))
    _write(tmp_path, "olmp_vs_tfmot_lenet5.json", dict(_olmp_result(SERVING), model="lenet5"))
    table = tabulate_results.rows(str(tmp_path))
    assert [(r["model"], r["method"], r["latency_backfilled"]) for r in table] == [
        ("lenet300_100", "olmp", False), ("lenet300_100", "tfmot", True),
        ("lenet5", "olmp", False), ("lenet5", "tfmot", False)]
    lines = tabulate_results.markdown_table(table)
    marked = [line for line in lines if tabulate_results.BACKFILLED in line]
    assert len(marked) == 1 and "`tfmot` | lenet300_100" in marked[0]
    assert marked[0].count("x)" + tabulate_results.BACKFILLED) == 2, "both batch sizes carry the mark"
    tabulate_results.tabulate(str(tmp_path))
    assert "backfill_tfmot_latency.py" in (tmp_path / "summary.md").read_text()


def test_no_backfill_note_without_a_backfilled_latency(tmp_path):
    _write(tmp_path, "olmp_vs_tfmot_lenet300_100.json", _olmp_result())
    table = tabulate_results.rows(str(tmp_path))
    assert table[1]["serving_latency"] is None and tabulate_results.backfill_note(table) == ""
    tabulate_results.tabulate(str(tmp_path))
    assert "backfill_tfmot_latency.py" not in (tmp_path / "summary.md").read_text()
