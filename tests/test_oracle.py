"""NCSOracle drives a Keras Tuner search: same run as bare NCS, files in the project, exact resume."""

import json
import os

import keras_tuner
import numpy as np
import pytest

from keras_prune.search import NCS, NCSOracle

# Keras Tuner 1.4.8 calls threading.currentThread().getName() on every oracle call.
pytestmark = [
    pytest.mark.filterwarnings("ignore:currentThread:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:getName:DeprecationWarning"),
]

NAMES = ["c0", "c1", "c2"]
TARGET = np.array([1.0, -2.0, 0.5])
SETTINGS = dict(budget=41, population_size=4, seed=3)  # 1 start + 10 generations of 4


def _quadratic(x):
    return float(np.sum((np.asarray(x) - TARGET) ** 2))


def _space():
    hp = keras_tuner.HyperParameters()
    for name in NAMES:
        hp.Float(name, -5.0, 5.0, default=-3.0)
    return hp


class _Crash(keras_tuner.errors.FatalError):
    """Stands for the process dying mid-trial: Keras Tuner lets it through."""


class QuadraticTuner(keras_tuner.Tuner):
    """No model: a trial's score is a quadratic of its hyperparameters.

    `crash_at` / `fail_at` make the n-th `run_trial` call (counted from 0) raise a fatal
    error (the search stops with the trial in flight) or an ordinary one (a failed trial).
    """

    def __init__(self, *args, crash_at=None, fail_at=None, negate=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.crash_at, self.fail_at, self.negate = crash_at, fail_at, negate
        self.calls = []

    def run_trial(self, trial, **kwargs):
        call = len(self.calls)
        self.calls.append(trial.trial_id)
        if call == self.crash_at:
            raise _Crash("simulated crash")
        if call == self.fail_at:
            raise RuntimeError("simulated failure")
        value = _quadratic([trial.hyperparameters.get(name) for name in NAMES])
        return {"score": -value} if self.negate else value


def _tuner(path, *, overwrite=True, objective=None, failure_value=None, **kwargs):
    oracle = NCSOracle(objective, hyperparameters=_space(), failure_value=failure_value, **SETTINGS)
    return QuadraticTuner(oracle=oracle, directory=str(path), project_name="ncs",
                          overwrite=overwrite, **kwargs)


def _bare_ncs():
    search = NCS(np.full(3, -3.0), bounds=(-5.0, 5.0), **SETTINGS)
    while not search.done:
        search.tell([_quadratic(x) for x in search.ask()])
    return search


def test_oracle_runs_the_same_search_as_bare_ncs(tmp_path):
    tuner = _tuner(tmp_path)
    tuner.search(verbose=0)
    oracle, expected = tuner.oracle, _bare_ncs()
    assert len(oracle.trials) == expected.evaluations == 41
    assert oracle.ncs.get_state() == expected.get_state()
    assert oracle.remaining_trials() == 0
    best = tuner.get_best_hyperparameters()[0].values
    np.testing.assert_array_equal([best[name] for name in NAMES], expected.result().x)
    # The first trial evaluates the starting point (the Float defaults).
    assert oracle.trials[oracle.start_order[0]].hyperparameters.values == dict.fromkeys(NAMES, -3.0)


def test_results_land_in_the_tuner_directory(tmp_path):
    tuner = _tuner(tmp_path)
    tuner.search(verbose=0)
    project = tmp_path / "ncs"
    assert len(list(project.glob("trial_*/trial.json"))) == 41
    with open(project / "oracle.json") as f:
        saved = json.load(f)
    assert saved["ncs"] == tuner.oracle.ncs.get_state()
    assert saved["ncs"]["generation"] == 10 and len(saved["ncs"]["trajectory"]) == 11


def test_finished_search_stops_at_once(tmp_path):
    _tuner(tmp_path).search(verbose=0)
    again = _tuner(tmp_path, overwrite=False)
    again.search(verbose=0)
    assert again.calls == [] and len(again.oracle.trials) == 41


# Not 0: Keras Tuner writes its tuner file when the first trial ends, and reloads only if
# that file exists, so a crash during trial 0 starts afresh (the same run, seed fixed).
@pytest.mark.parametrize("crash_at", [1, 5, 17])
def test_interrupted_search_resumes_where_it_stopped(tmp_path, crash_at):
    first = _tuner(tmp_path, crash_at=crash_at)
    with pytest.raises(_Crash):
        first.search(verbose=0)
    in_flight = first.calls[-1]
    generation = first.oracle.ncs.generation

    resumed = _tuner(tmp_path, overwrite=False)
    assert resumed.oracle.ncs.generation == generation  # the NCS state was reloaded
    assert len(resumed.oracle.trials) == crash_at + 1
    resumed.search(verbose=0)
    assert resumed.calls[0] == in_flight  # the trial in flight is re-run under its id
    assert len(resumed.calls) == 41 - crash_at
    assert len(resumed.oracle.trials) == 41  # continued, not restarted
    assert resumed.oracle.ncs.get_state() == _bare_ncs().get_state()


def test_failed_trial_is_proposed_again(tmp_path):
    tuner = _tuner(tmp_path, fail_at=6)
    tuner.search(verbose=0)
    failed = tuner.oracle.trials[tuner.calls[6]]
    assert failed.status == "FAILED"
    retry = tuner.oracle.trials[tuner.calls[7]]
    assert retry.hyperparameters.values == failed.hyperparameters.values
    assert len(tuner.oracle.trials) == 42
    assert tuner.oracle.ncs.get_state() == _bare_ncs().get_state()


def test_failed_trial_gets_failure_value_when_set(tmp_path):
    tuner = _tuner(tmp_path, fail_at=6, failure_value=1e6)
    tuner.search(verbose=0)
    assert len(tuner.oracle.trials) == 41
    assert tuner.oracle.ncs.evaluations == 41
    assert tuner.oracle.ncs.get_state() != _bare_ncs().get_state()


def test_maximised_objective_is_negated_for_ncs(tmp_path):
    tuner = _tuner(tmp_path, objective=keras_tuner.Objective("score", "max"), negate=True)
    tuner.search(verbose=0)
    assert tuner.oracle.ncs.get_state() == _bare_ncs().get_state()


def test_non_float_hyperparameters_are_rejected():
    hp = keras_tuner.HyperParameters()
    hp.Int("layers", 1, 3)
    with pytest.raises(TypeError, match="Float"):
        NCSOracle(hyperparameters=hp, budget=10)


def test_reload_with_other_hyperparameters_raises(tmp_path):
    _tuner(tmp_path).search(verbose=0)
    hp = keras_tuner.HyperParameters()
    for name in ["a", "b", "c"]:
        hp.Float(name, -5.0, 5.0)
    oracle = NCSOracle(hyperparameters=hp, **SETTINGS)
    with pytest.raises(ValueError, match="different hyperparameters"):
        QuadraticTuner(oracle=oracle, directory=str(tmp_path), project_name="ncs", overwrite=False)
    assert os.path.exists(tmp_path / "ncs" / "oracle.json")


def test_a_kill_while_a_trial_file_is_written_leaves_the_old_file_whole(tmp_path, monkeypatch):
    # Keras Tuner rewrites trial.json in place (create, update, end) and parses every one on
    # resume; a kill mid-write left an empty file that the resumed run could not parse.
    import keras_prune.export.report_io as report_io

    tuner = _tuner(tmp_path)
    tuner.search(verbose=0)
    trial = next(iter(tuner.oracle.trials.values()))
    path = tmp_path / "ncs" / f"trial_{trial.trial_id}" / "trial.json"
    before = path.read_text()

    def killed(*args):
        raise KeyboardInterrupt("killed between writing and renaming")

    monkeypatch.setattr(report_io.os, "replace", killed)
    trial.score = -123.0
    with pytest.raises(KeyboardInterrupt):
        tuner.oracle._save_trial(trial)
    assert path.read_text() == before and json.loads(before)["score"] != -123.0
    assert not [p for p in path.parent.iterdir() if p.name != "trial.json"]  # no temporary left behind
    monkeypatch.undo()
    tuner.oracle._save_trial(trial)
    assert json.loads(path.read_text())["score"] == -123.0
