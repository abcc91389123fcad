"""benchmarks/run_all.py and benchmarks/common.py: every job runs once, seeded jobs once per seed,
and each seed's results file and log sit beside the others under their own names."""

import argparse
import json
import os
import sys

import pytest

from conftest import load_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
common = load_benchmark("common")
run_all = load_benchmark("run_all")

FAKE_BENCHMARK = f"""
import argparse, json, os, sys
sys.path.insert(0, {os.path.join(ROOT, "benchmarks")!r})
from common import results_dir, results_name
parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
print("fake benchmark, seed", args.seed)
with open(os.path.join(results_dir(), results_name("fake", args.seed)), "w") as f:
    json.dump({{"seed": args.seed}}, f)
"""


@pytest.mark.parametrize("seed, name", [(0, "lstm_vs_l1_vgg16.json"), (2, "lstm_vs_l1_vgg16_seed2.json")])
def test_results_names_carry_the_seed_and_split_back(seed, name):
    assert common.results_name("lstm_vs_l1_vgg16", seed) == name
    assert common.split_seed(name) == ("lstm_vs_l1_vgg16", seed)
    assert common.split_seed("/some/folder/" + name) == ("lstm_vs_l1_vgg16", seed)


def test_seeds_are_parsed_and_bad_lists_named():
    assert run_all._seeds("0,1,2") == [0, 1, 2]
    assert run_all._seeds(" 3 ") == [3]
    for bad in ("0,0", "a,b", "", "-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="--seeds"):
            run_all._seeds(bad)


def _run_all(tmp_path, monkeypatch, seeds):
    scripts, results = tmp_path / "scripts", tmp_path / "results"
    scripts.mkdir(exist_ok=True)
    (scripts / "fake.py").write_text(FAKE_BENCHMARK)
    monkeypatch.setattr(run_all, "HERE", str(scripts))
    monkeypatch.setattr(run_all, "JOBS", [("seeded", ["fake.py"], 1), ("unseeded", ["fake.py"], 1)])
    monkeypatch.setattr(run_all, "UNSEEDED", {"unseeded"})
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--seeds", seeds, "--results", str(results)])
    with pytest.raises(SystemExit) as exit_:
        run_all.main()
    assert exit_.value.code == 0
    return results


def test_seeded_jobs_run_once_per_seed_and_the_others_once(tmp_path, monkeypatch):
    results = _run_all(tmp_path, monkeypatch, "0,2")
    record = json.loads((results / "run_all.json").read_text())
    assert sorted(record["jobs"]) == ["seeded", "seeded_seed2", "unseeded"]
    assert record["runs"][-1]["runs"] == ["seeded", "seeded_seed2", "unseeded"]
    assert record["jobs"]["seeded_seed2"]["command"][-2:] == ["--seed", "2"]
    assert "--seed" not in record["jobs"]["seeded"]["command"]
    assert (results / "logs" / "seeded_seed2.log").read_text().strip() == "fake benchmark, seed 2"
    assert sorted(p.name for p in results.glob("fake*.json")) == ["fake.json", "fake_seed2.json"]


def test_repeats_with_other_seeds_leave_the_unseeded_jobs_alone(tmp_path, monkeypatch):
    _run_all(tmp_path, monkeypatch, "0")
    results = _run_all(tmp_path, monkeypatch, "1,2")
    record = json.loads((results / "run_all.json").read_text())
    assert [run["runs"] for run in record["runs"]] == [["seeded", "unseeded"], ["seeded_seed1", "seeded_seed2"]]
    assert sorted(record["jobs"]) == ["seeded", "seeded_seed1", "seeded_seed2", "unseeded"]
