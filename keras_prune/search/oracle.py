"""`NCSOracle`: Negatively Correlated Search as a Keras Tuner oracle, one offspring per trial.

Keras Tuner then supplies the bookkeeping: one folder per trial, retries, the
`overwrite=False` resume, and chief/worker parallel tuning. This module uses no Keras API
itself (Keras Tuner, which it imports, does import Keras and TensorFlow).
"""

import collections.abc
import contextlib
import os

import keras_tuner
import numpy as np
from keras_tuner.engine.hyperparameters import Float
from keras_tuner.engine.trial import TrialStatus as _Status

from keras_prune.export.report_io import write_json
from keras_prune.search.ncs import NCS

__all__ = ["NCSOracle"]


class NCSOracle(keras_tuner.Oracle):
    """Proposes NCS candidates, one per trial, and tells NCS each scored generation.

    The search space is a `keras_tuner.HyperParameters` of `hp.Float`s, one per
    dimension; their `min_value`/`max_value` are the NCS bounds and their defaults the
    starting point. Trials run in the order NCS asks: first the initial point(s), then
    generations of `population_size` offspring. Once all candidates of a batch are scored,
    the batch goes to `NCS.tell`; when the NCS budget is spent the oracle answers STOPPED.

    The objective is minimised (a "max" objective is negated for NCS). A trial that
    cannot meet a constraint should report a large finite value itself (a death penalty):
    the oracle does not know the constraint. Non-finite scores count as invalid trials.

    Resuming: the NCS state (population, step sizes, RNG, pending candidates) and which
    trial holds which candidate are part of the oracle state, so a tuner built again with
    `overwrite=False` continues the search exactly. Keras Tuner re-runs a trial that was
    in flight at a crash under its own id, with the same values. A trial that ends FAILED
    (after Keras Tuner's own retries) gets `failure_value` if one is set; otherwise its
    candidate is proposed again in a new trial. Either way Keras Tuner's
    `max_consecutive_failed_trials` (3 by default; None for no limit) ends a search whose
    evaluations keep failing: it counts FAILED trials whether or not they got a value.

    Args:
        objective: as for `keras_tuner.Oracle` (default: the value `run_trial` returns,
            minimised).
        hyperparameters: a `keras_tuner.HyperParameters` holding only unconditional,
            linear `Float`s without `step`.
        budget: NCS evaluations (Tmax); see `NCS`.
        population_size: N; see `NCS` (default 10, or the rows of a population).
        initial: the starting point: None (the `Float` defaults), a mapping from
            hyperparameter name to value, or an array of shape `(dimension,)` or
            `(population_size, dimension)` in the order of `hyperparameters.space`.
        sigma: initial NCS step sizes; see `NCS`.
        boundary: "clip" or "reflect"; see `NCS`.
        legacy_olmp: reproduce the released OLMP NCS; see `NCS`.
        failure_value: the NCS fitness (minimised, whatever the objective's direction) a
            FAILED trial's candidate receives; None re-proposes the candidate instead.
        seed: seeds NCS (default: the oracle's `seed`).
        max_retries_per_trial: as for `keras_tuner.Oracle`.
        max_consecutive_failed_trials: as for `keras_tuner.Oracle`.
    """

    def __init__(self, objective=None, *, hyperparameters, budget, population_size=None, initial=None,
                 sigma=None, boundary="clip", legacy_olmp=False, failure_value=None, seed=None,
                 max_retries_per_trial=0, max_consecutive_failed_trials=3):
        super().__init__(
            objective=objective,
            max_trials=None,  # the NCS budget decides when to stop
            hyperparameters=hyperparameters,
            allow_new_entries=False,
            tune_new_entries=False,
            seed=seed,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        space = _float_space(hyperparameters)
        self._names = [hp.name for hp in space]
        lower = [hp.min_value for hp in space]
        upper = [hp.max_value for hp in space]
        self._ncs = NCS(
            _initial_point(initial, space), bounds=(lower, upper), budget=budget,
            population_size=population_size, sigma=sigma, boundary=boundary,
            legacy_olmp=legacy_olmp, seed=self.seed if seed is None else seed,
        )
        if failure_value is not None and not np.isfinite(failure_value):
            raise ValueError(f"Expected a finite `failure_value` or None. Received: {failure_value!r}")
        self.failure_value = failure_value
        # The batch being evaluated: trial_id -> row of `self._ncs.pending`, and the rows
        # no trial holds yet. A batch is told to NCS once every row has a result.
        self._assigned = {}
        self._open = []
        self._deferring = False

    @property
    def ncs(self):
        """The `NCS` instance, for reading (`result()`, `trajectory`, `sigma`); do not ask/tell it."""
        return self._ncs

    def populate_space(self, trial_id):
        """The next NCS candidate for `trial_id`; IDLE while other workers finish a batch."""
        self._collect()
        if not self._open:
            if self._assigned:
                return {"status": _Status.IDLE, "values": None}
            if self._ncs.done:
                return {"status": _Status.STOPPED, "values": None}
            self._open = list(range(len(self._ncs.ask())))
        row = self._open.pop(0)
        self._assigned[trial_id] = row
        values = self._ncs.pending[row]
        return {"status": _Status.RUNNING, "values": {n: float(v) for n, v in zip(self._names, values)}}

    def score_trial(self, trial):
        super().score_trial(trial)
        # NCS normalises by fitness gaps, which an infinite value turns into NaN; Keras
        # Tuner treats a NaN score as an invalid trial (retried, then FAILED).
        if trial.score is not None and not np.isfinite(trial.score):
            trial.score = float("nan")

    @keras_tuner.synchronized
    def end_trial(self, trial):
        with self._saves_deferred():  # the save below follows at once (see `save`)
            super().end_trial(trial)
        self._collect()
        self.save()

    def remaining_trials(self):
        """NCS evaluations still to be scored (re-proposed failures not counted)."""
        scored = sum(
            trial.status == _Status.COMPLETED
            or (trial.status == _Status.FAILED and self.failure_value is not None)
            for trial in (self.trials.get(trial_id) for trial_id in self._assigned)
            if trial is not None
        )
        return self._ncs.planned_evaluations - self._ncs.evaluations - scored

    def _batch_results(self):
        """`{row: fitness}` for the scored rows of the current batch; reopens failed rows."""
        sign = -1.0 if self.objective.direction == "max" else 1.0
        results = {}
        for trial_id, row in list(self._assigned.items()):
            trial = self.trials.get(trial_id)
            status = None if trial is None else trial.status
            if status == _Status.COMPLETED:
                results[row] = sign * float(trial.score)
            elif status == _Status.FAILED and self.failure_value is not None:
                results[row] = float(self.failure_value)
            elif status == _Status.FAILED or not self._in_flight(trial_id):
                # No result will come: a failure to re-propose, or a trial no tuner
                # runs or will retry (e.g. lost in a crash between two writes).
                del self._assigned[trial_id]
                self._open.insert(0, row)
        return results

    def _in_flight(self, trial_id):
        ongoing = {trial.trial_id for trial in self.ongoing_trials.values()}
        return trial_id in ongoing or trial_id in self._retry_queue

    def _collect(self):
        """Tells NCS the current batch once every candidate in it has a result."""
        if not self._assigned:
            return
        results = self._batch_results()
        if len(results) == len(self._ncs.pending):
            self._ncs.tell([results[row] for row in range(len(results))])
            self._assigned, self._open = {}, []

    def get_state(self):
        state = super().get_state()
        state.update({
            "ncs_names": self._names,
            "ncs": self._ncs.get_state(),
            "ncs_assigned": dict(self._assigned),
            "ncs_open": list(self._open),
        })
        return state

    def set_state(self, state):
        super().set_state(state)
        if state["ncs_names"] != self._names:
            raise ValueError(
                "The saved search has different hyperparameters. Expected: "
                f"{self._names}. Received: ncs_names={state['ncs_names']}"
            )
        self._ncs.set_state(state["ncs"])
        self._assigned = dict(state["ncs_assigned"])
        self._open = list(state["ncs_open"])

    def save(self):
        """Writes the oracle state atomically (unlike Keras Tuner's own writer: a crash
        mid-write must not cost the search its state) and compactly.

        The state grows with every trial and Keras Tuner saves it when a trial starts
        and, twice, when one ends: indented JSON made these writes, not the evaluations,
        most of an OLMP search's time. Compact JSON goes through the C encoder, and
        `end_trial` writes once, after NCS has been told.
        """
        if getattr(self, "_deferring", False):  # (Keras Tuner may save before __init__ ends)
            return
        write_json(self._get_oracle_fname(), self.get_state(), indent=None)

    def _save_trial(self, trial):
        """Writes a trial's file atomically too. Keras Tuner writes it in place when a trial is
        created, updated and ended, and reloads every one on resume: a kill during that write
        left an empty file, and the resumed run failed to parse it."""
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        write_json(path, trial.get_state(), indent=None, durable=False)

    @contextlib.contextmanager
    def _saves_deferred(self):
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False


def _float_space(hyperparameters):
    space = list(hyperparameters.space) if hyperparameters is not None else []
    if not space:
        raise ValueError("Expected `hyperparameters` with at least one `Float`. Received: an empty space")
    for hp in space:
        if not isinstance(hp, Float) or hp.conditions or hp.step is not None or hp.sampling != "linear":
            raise TypeError(
                "Expected only unconditional, linear `hp.Float`s without `step` (NCS moves "
                f"continuously). Received: {hp!r}"
            )
    return space


def _initial_point(initial, space):
    if initial is None:
        return [hp.default for hp in space]
    if isinstance(initial, collections.abc.Mapping):
        missing = [hp.name for hp in space if hp.name not in initial]
        if missing or len(initial) != len(space):
            raise ValueError(
                f"Expected `initial` to give exactly {[hp.name for hp in space]}. "
                f"Received: initial keys={sorted(initial)}"
            )
        return [initial[hp.name] for hp in space]
    return initial
