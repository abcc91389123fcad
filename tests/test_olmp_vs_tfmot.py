"""benchmarks/olmp_vs_tfmot.py: the comparison at OLMP's accuracy and the seed of the tfmot side."""

import argparse
import json
import subprocess

from conftest import load_benchmark

olmp_vs_tfmot = load_benchmark("olmp_vs_tfmot")


def test_a_tfmot_point_at_olmp_s_accuracy_counts_though_float32_rounds_it_up():
    olmp = {"test_accuracy": 0.9520000219345093, "compression": 200.0}  # Keras' float32 of 952 / 1000
    tfmot = {"sweep": [{"test_accuracy": 0.952, "compression": 20.0}, {"test_accuracy": 0.9, "compression": 50.0}]}
    comparison = olmp_vs_tfmot.compare(0.97, olmp, tfmot)
    assert comparison["tfmot_best"]["compression"] == 20.0
    assert comparison["olmp_over_tfmot_compression"] == 10.0


def test_the_tfmot_worker_gets_the_run_s_seed(tmp_path, monkeypatch):
    commands = []

    def fake_run(command, check):
        commands.append(command)
        (tmp_path / "tfmot.json").write_text(json.dumps({"sweep": []}))

    monkeypatch.setattr(subprocess, "run", fake_run)
    args = argparse.Namespace(model="lenet5", sparsities="0.5,0.9", tfmot_epochs=1)
    assert olmp_vs_tfmot.run_tfmot_process(args, str(tmp_path), 3) == {"sweep": []}
    (command,) = commands
    assert command[command.index("--seed") + 1] == "3"
