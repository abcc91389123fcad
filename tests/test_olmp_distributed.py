"""OLMP's NCS search in Keras Tuner's distributed mode: a chief and two workers on loopback.

The chief serves `NCSOracle` over gRPC; the workers evaluate the trials. NCS tells the
oracle a whole generation at once, so the distributed search must find exactly what one
process finds with the same budget and seed, with every candidate evaluated once.
"""

import json
import os
import shutil
import subprocess
import sys
import threading

import grpc
import keras_tuner
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ncs_tuner_process  # noqa: E402
from keras_prune.methods.olmp import search as olmp_search  # noqa: E402
from conftest import free_ports, run_processes  # noqa: E402


def _lines(path):
    return open(path).read().splitlines() if os.path.exists(path) else []


@pytest.mark.slow
def test_chief_and_two_workers_find_what_one_process_finds_evaluating_each_candidate_once(tmp_path):
    alone = ncs_tuner_process.search(str(tmp_path / "alone"), str(tmp_path / "alone.log"))
    expected = _lines(tmp_path / "alone.log")
    assert len(expected) == ncs_tuner_process.SETTINGS.budget

    port = free_ports(1)[0]
    tuners = ("chief", "tuner0", "tuner1")
    commands = []
    for tuner_id in tuners:
        env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
               "KERASTUNER_ORACLE_PORT": str(port), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        commands.append(([sys.executable, os.path.join(HERE, "ncs_tuner_process.py"), str(tmp_path / "shared"),
                          str(tmp_path / f"{tuner_id}.log")], env))
    outcomes = {}
    for tuner_id, (returncode, output) in zip(tuners, run_processes(commands, timeout=240)):
        assert returncode == 0, f"{tuner_id}:\n{output[-3000:]}"
        line = next(l for l in output.splitlines() if l.startswith("OUTCOME "))
        outcomes[tuner_id] = json.loads(line[len("OUTCOME "):])

    evaluated = {tuner_id: _lines(tmp_path / f"{tuner_id}.log") for tuner_id in tuners}
    assert evaluated["chief"] == [], "the chief only serves the oracle"
    assert evaluated["tuner0"] and evaluated["tuner1"], "both workers evaluated trials"
    together = evaluated["tuner0"] + evaluated["tuner1"]
    assert len(together) == len(set(together)), "no candidate evaluated twice"
    assert sorted(together) == sorted(expected), "the same candidates as one process: none lost"
    for tuner_id, outcome in outcomes.items():
        assert outcome["fitness"] == alone.fitness, tuner_id
        assert outcome["crates"] == alone.crates.tolist(), tuner_id


def _as_late_worker(monkeypatch, rpc_seconds, wait_seconds):
    """This process becomes worker tuner0 of a chief that is not (or no longer) serving."""
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(free_ports(1)[0]))
    monkeypatch.setattr(olmp_search, "_BASE_PORT", [])
    monkeypatch.setattr(olmp_search, "WORKER_RPC_SECONDS", rpc_seconds)
    monkeypatch.setattr(olmp_search, "WORKER_WAIT_SECONDS", wait_seconds)
    monkeypatch.setattr(olmp_search, "GOODBYE_RPC_SECONDS", 1)


def test_a_worker_arriving_after_the_chief_finished_reads_the_finished_search(tmp_path, monkeypatch):
    alone = ncs_tuner_process.search(str(tmp_path), str(tmp_path / "alone.log"))
    _as_late_worker(monkeypatch, rpc_seconds=600, wait_seconds=600)

    def search(self, *args, **kwargs):
        raise AssertionError("a worker that finds the finished search must not wait for the chief")

    monkeypatch.setattr(olmp_search.PruningTuner, "search", search)
    late = ncs_tuner_process.search(str(tmp_path), str(tmp_path / "late.log"))
    assert not (tmp_path / "late.log").exists(), "nothing left to evaluate"
    assert late.fitness == alone.fitness and late.crates.tolist() == alone.crates.tolist()


def test_a_resumed_chief_whose_call_had_finished_does_not_serve_it_again(tmp_path, monkeypatch):
    """Killed after the call's last generation was saved, the chief restarts with --resume while the
    workers, having read the finished search, train on towards the next call's port: serving this
    call again would wait for workers that never come."""
    alone = ncs_tuner_process.search(str(tmp_path), str(tmp_path / "alone.log"))
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(free_ports(1)[0]))
    monkeypatch.setattr(olmp_search, "_BASE_PORT", [])

    def search(self, *args, **kwargs):
        raise AssertionError("the chief served a finished call again")

    monkeypatch.setattr(olmp_search.PruningTuner, "search", search)
    resumed = ncs_tuner_process.search(str(tmp_path), str(tmp_path / "resumed.log"), resume=True)
    assert resumed.fitness == alone.fitness and resumed.crates.tolist() == alone.crates.tolist()
    assert resumed.trajectory == alone.trajectory and resumed.evaluations == alone.evaluations


def test_a_worker_waits_for_a_chief_that_finishes_while_it_retries(tmp_path, monkeypatch):
    finished = tmp_path / "finished"
    alone = ncs_tuner_process.search(str(finished), str(tmp_path / "alone.log"))
    _as_late_worker(monkeypatch, rpc_seconds=1, wait_seconds=60)
    shared = tmp_path / "shared"

    def chief_finishes():  # the chief writes its state atomically, as this copy does
        staged = tmp_path / "staged"
        shutil.copytree(finished, staged)
        for source in staged.rglob("oracle.json"):
            target = shared / source.relative_to(staged)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)

    mover = threading.Timer(2.5, chief_finishes)
    mover.start()
    try:
        late = ncs_tuner_process.search(str(shared), str(tmp_path / "late.log"))
    finally:
        mover.join()
    assert late.fitness == alone.fitness and late.crates.tolist() == alone.crates.tolist()


def test_a_worker_without_a_chief_gives_up_with_the_grpc_error(tmp_path, monkeypatch):
    _as_late_worker(monkeypatch, rpc_seconds=1, wait_seconds=2)
    with pytest.raises(grpc.RpcError) as raised:
        ncs_tuner_process.search(str(tmp_path), str(tmp_path / "late.log"))
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


class _Unanswered(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self):
        return "deadline exceeded"


def test_an_unanswered_request_ends_the_attempt_instead_of_failing_the_trial(tmp_path):
    space = keras_tuner.HyperParameters()
    space.Float("layer_0", 0.0, 3.0, default=1.0)
    oracle = olmp_search.NCSOracle(hyperparameters=space, budget=8, population_size=2, sigma=0.5, seed=0)
    tuner = olmp_search.PruningTuner(lambda crates: float(crates[0]), ["layer_0"], oracle=oracle,
                                     directory=str(tmp_path), project_name="p")
    trial = oracle.create_trial("tuner0")

    def unanswered(*args, **kwargs):
        raise _Unanswered()

    oracle.update_trial = unanswered
    with pytest.raises(olmp_search.ChiefUnreachable) as raised:
        tuner._try_run_and_update_trial(trial)
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert trial.status == "RUNNING", "not marked failed: the retry evaluates it again under the same trial"


OLMP_SMOKE = ["--method=olmp", "--model=lenet300_100", "--pretrain_epochs=1", "--batch_size=64", "--max_batches=5",
              "--latency_repeats=2", "--export=keras", "--olmp_iterations=60", "--olmp_prune_stop=40",
              "--olmp_prune_interval=20", "--olmp_population=4", "--olmp_budget=17"]


@pytest.mark.slow
def test_bin_prune_olmp_with_a_chief_and_two_workers_matches_one_process(tmp_path):
    prune = os.path.join(os.path.dirname(HERE), "bin", "prune")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    alone = subprocess.run([sys.executable, prune, *OLMP_SMOKE, f"--output_dir={tmp_path / 'alone'}"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert alone.returncode == 0, alone.stderr[-3000:]

    port = free_ports(1)[0]
    tuners = ("chief", "tuner0", "tuner1")
    commands = []
    for tuner_id in tuners:
        tuner_env = {**env, "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
                     "KERASTUNER_ORACLE_PORT": str(port)}
        commands.append(([sys.executable, prune, *OLMP_SMOKE, f"--output_dir={tmp_path / 'run'}"], tuner_env))
    outputs = {}
    for tuner_id, (returncode, output) in zip(tuners, run_processes(commands, timeout=400)):
        assert returncode == 0, f"{tuner_id}:\n{output[-3000:]}"
        outputs[tuner_id] = output
    assert "tuner1; the chief wrote the run folder" in outputs["tuner1"]
    assert not (tmp_path / "run.tuner0").exists() and not (tmp_path / "run.tuner1").exists()

    one = json.loads((tmp_path / "alone" / "report.json").read_text())
    three = json.loads((tmp_path / "run" / "report.json").read_text())
    calls_one, calls_three = one["method_details"]["ncs"], three["method_details"]["ncs"]
    assert len(calls_three) == len(calls_one) >= 2
    for a, b in zip(calls_one, calls_three):
        assert b["evaluations"] == a["evaluations"], "the same budget per NCS call"
        assert abs(b["best_fitness"] - a["best_fitness"]) < 0.02
    assert abs(three["pruned"]["nonzero_params"] / one["pruned"]["nonzero_params"] - 1) < 0.05
    assert abs(three["pruned"]["accuracy"] - one["pruned"]["accuracy"]) < 0.05
