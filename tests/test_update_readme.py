"""benchmarks/update_readme.py: the README's results section is generated from the results files."""

import importlib.util
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
_spec = importlib.util.spec_from_file_location("update_readme", os.path.join(ROOT, "benchmarks", "update_readme.py"))
update_readme = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(update_readme)


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
