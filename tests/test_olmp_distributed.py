"""OLMP's NCS search in Keras Tuner's distributed mode: a chief and two workers on loopback.

The chief serves `NCSOracle` over gRPC; the workers evaluate the trials. NCS tells the
oracle a whole generation at once, so the distributed search must find exactly what one
process finds with the same budget and seed, with every candidate evaluated once.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ncs_tuner_process  # noqa: E402


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lines(path):
    return open(path).read().splitlines() if os.path.exists(path) else []


@pytest.mark.slow
def test_chief_and_two_workers_find_what_one_process_finds_evaluating_each_candidate_once(tmp_path):
    alone = ncs_tuner_process.search(str(tmp_path / "alone"), str(tmp_path / "alone.log"))
    expected = _lines(tmp_path / "alone.log")
    assert len(expected) == ncs_tuner_process.SETTINGS.budget

    port = _free_port()
    processes = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
               "KERASTUNER_ORACLE_PORT": str(port), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        processes[tuner_id] = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "ncs_tuner_process.py"), str(tmp_path / "shared"),
             str(tmp_path / f"{tuner_id}.log")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    outputs = {}
    try:
        for tuner_id, process in processes.items():
            outputs[tuner_id] = process.communicate(timeout=240)[0]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    outcomes = {}
    for tuner_id, process in processes.items():
        assert process.returncode == 0, f"{tuner_id}:\n{outputs[tuner_id][-3000:]}"
        line = next(l for l in outputs[tuner_id].splitlines() if l.startswith("OUTCOME "))
        outcomes[tuner_id] = json.loads(line[len("OUTCOME "):])

    evaluated = {tuner_id: _lines(tmp_path / f"{tuner_id}.log") for tuner_id in processes}
    assert evaluated["chief"] == [], "the chief only serves the oracle"
    assert evaluated["tuner0"] and evaluated["tuner1"], "both workers evaluated trials"
    together = evaluated["tuner0"] + evaluated["tuner1"]
    assert len(together) == len(set(together)), "no candidate evaluated twice"
    assert sorted(together) == sorted(expected), "the same candidates as one process: none lost"
    for tuner_id, outcome in outcomes.items():
        assert outcome["fitness"] == alone.fitness, tuner_id
        assert outcome["crates"] == alone.crates.tolist(), tuner_id
