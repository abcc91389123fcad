"""One NCS call of OLMP: search the triggered layers' c-rates, as a Keras Tuner search or bare.

The default runs NCS through `NCSOracle` and a `PruningTuner`: one Keras Tuner trial per
candidate, whose `run_trial` only evaluates the candidate (no model is built), so every
trial lands in `<directory>/<project>/trial_*` and an interrupted call continues where it
stopped (`overwrite=False`). The bare path runs `NCS` ask/tell and saves its exact state
after each generation; an interrupted call then loses at most the generation in flight.

Keras Tuner's distributed mode works as it does for any tuner (docs/distributed.md): with
`KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT` set, the chief
serves `NCSOracle` and each worker evaluates the trials it is given; a worker reads the
finished search from the oracle's file in the shared `directory`.
"""

import contextlib
import dataclasses
import os
import time

import grpc
import keras_tuner
import numpy as np

from keras_prune.export.report_io import read_json, write_json
from keras_prune.search import NCS, NCSOracle

__all__ = ["ChiefUnreachable", "PruningTuner", "SearchOutcome", "distributed_tuning", "search_crates"]


class ChiefUnreachable(keras_tuner.errors.FatalError):
    """A worker's request to the chief's oracle went unanswered (`code`: the gRPC status)."""

    def __init__(self, code, details=""):
        super().__init__(f"the Keras Tuner chief did not answer ({code}): {details}")
        self.code = code


@dataclasses.dataclass(frozen=True)
class SearchOutcome:
    """The result of one NCS call.

    Attributes:
        crates: the best c-rates found, one per searched layer.
        fitness: their fitness (remaining fraction, or the death penalty).
        trajectory: best-so-far fitness after the start point (index 0) and each generation.
        evaluations: candidates evaluated.
        generations: NCS generations run.
    """

    crates: np.ndarray
    fitness: float
    trajectory: list
    evaluations: int
    generations: int


class PruningTuner(keras_tuner.Tuner):
    """A Keras Tuner whose trial evaluates one c-rate candidate; it never builds a model.

    Args:
        fitness: `fn(crates) -> float`, the candidate's NCS fitness (minimised).
        names: the hyperparameter names, in the order `fitness` takes the c-rates.
        **kwargs: for `keras_tuner.Tuner` (`oracle`, `directory`, `project_name`, `overwrite`).
    """

    def __init__(self, fitness, names, **kwargs):
        super().__init__(**kwargs)
        self.fitness = fitness
        self.names = list(names)
        self.trials_ended = 0

    def _run_and_update_trial(self, trial, *args, **kwargs):
        # Keras Tuner records any error of a trial as a failed trial (and evaluates its
        # candidate again); an unanswered request to the chief is not the candidate's fault.
        try:
            super()._run_and_update_trial(trial, *args, **kwargs)
        except grpc.RpcError as error:
            raise ChiefUnreachable(error.code(), str(error.details())) from error

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters
        return float(self.fitness(np.array([values.get(name) for name in self.names], "float64")))

    def save(self):
        """Keras Tuner's save, atomic (the chief saves here before it serves its workers)."""
        if not self._is_worker():
            self.oracle.save()
        self._write_tuner_file()

    def _write_tuner_file(self):
        write_json(self._get_tuner_fname(), self.get_state())

    def on_trial_end(self, trial):
        """Ends the trial in the oracle, which saves itself; writes the tuner's file once.

        Keras Tuner's default also saves the oracle again here, a fourth write of its
        growing state per trial. This tuner has no state of its own (`get_state()` is
        empty), so its file only has to exist for `overwrite=False` to reload the project.
        """
        self.oracle.end_trial(trial)
        self.trials_ended += 1
        if not self._is_worker() and not os.path.exists(self._get_tuner_fname()):
            self._write_tuner_file()


def _seed(seed, iteration):
    """A per-call seed, so every NCS call of a run draws differently yet reproducibly."""
    return int(np.random.SeedSequence([seed, iteration]).generate_state(1)[0] % (2**31 - 1))


def search_crates(fitness, *, names, initial, settings, iteration, directory, resume):
    """Runs the NCS call at `iteration` over the c-rates of the layers `names`.

    Args:
        fitness: `fn(crates) -> float` for a candidate (one c-rate per name).
        names: the searched layers' names (the trial hyperparameters).
        initial: their current c-rates, NCS's start point (copied to the population).
        settings: the `OLMPSettings` (bounds, budget, population, sigma, legacy, use_tuner).
        iteration: the training iteration of this call (project name, seed, sigma schedule).
        directory: the folder of the tuner projects (or the bare searches' state files).
        resume: continue the call's saved search instead of starting it afresh.

    Returns:
        A `SearchOutcome`.
    """
    options = dict(
        budget=settings.budget,
        population_size=settings.population,
        sigma=settings.sigma_at(iteration),
        legacy_olmp=settings.legacy_ncs,
        seed=_seed(settings.seed, iteration),
    )
    project = f"ncs_{iteration:07d}"
    if distributed_tuning():
        _use_port_of_call(iteration // settings.prune_interval)
    initial = np.clip(np.asarray(initial, "float64"), *settings.crate_bounds)
    if settings.use_tuner:
        search = _tuner_search(fitness, names, initial, settings.crate_bounds, options, directory, project, resume)
    else:
        search = _bare_search(fitness, initial, settings.crate_bounds, options, directory, project, resume)
    result = search.result()
    return SearchOutcome(
        crates=np.asarray(result.x, "float64"),
        fitness=float(result.fitness),
        trajectory=[float(v) for v in result.trajectory],
        evaluations=int(result.evaluations),
        generations=int(result.generations),
    )


def _tuner_search(fitness, names, initial, bounds, options, directory, project, resume):
    space = keras_tuner.HyperParameters()
    for name, value in zip(names, initial):
        space.Float(name, bounds[0], bounds[1], default=float(value))
    oracle = NCSOracle(hyperparameters=space, **options)
    # A worker never overwrites: the project folder is the chief's (shared with the workers).
    worker = _tuner_worker()
    tuner = PruningTuner(fitness, names, oracle=oracle, directory=directory, project_name=project,
                         overwrite=not resume and not worker)
    if not worker:  # one process, or the chief: the oracle here runs the search
        if resume:  # a call that had finished before the kill: a chief serving it again would wait
            finished = _finished_search(oracle._get_oracle_fname(), initial, bounds, options)  # for workers gone on
            if finished is not None:
                return finished
        tuner.search(verbose=0)
        return oracle.ncs
    return _worker_search(tuner, oracle._get_oracle_fname(), initial, bounds, options)


WORKER_RPC_SECONDS = 60
"""A worker's deadline for one request to the chief, after which it looks at the shared file."""

WORKER_WAIT_SECONDS = 60 * 60
"""How long a worker waits for the chief without a trial ended (Keras Tuner's own limit)."""

GOODBYE_RPC_SECONDS = 10
"""The deadline of a worker's last request, which tells a waiting chief it has stopped."""

_RETRYABLE = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)


def _worker_search(tuner, path, initial, bounds, options):
    """A Keras Tuner worker's part of one NCS call: evaluate trials until the chief stops.

    The chief's oracle runs NCS; once it answers STOPPED every generation has been told and
    saved, so its file holds the finished search. A worker that arrives after the chief has
    finished and closed this call's port would wait on gRPC for an hour (Keras Tuner's
    clients wait for a server to appear), so it reads the file before each attempt and asks
    the chief with a short deadline. A retry loses nothing: the oracle hands a tuner id its
    ongoing trial again. The worker gives up after `WORKER_WAIT_SECONDS` without a trial ended.
    """
    last_progress = time.monotonic()
    while True:
        search = _finished_search(path, initial, bounds, options)
        if search is not None:
            _say_goodbye(tuner)
            return search
        ended = tuner.trials_ended
        try:
            with _rpc_deadline(WORKER_RPC_SECONDS):
                tuner.search(verbose=0)
            break
        except (grpc.RpcError, ChiefUnreachable) as error:
            code = error.code() if isinstance(error, grpc.RpcError) else error.code
            if tuner.trials_ended > ended:
                last_progress = time.monotonic()
            if code not in _RETRYABLE or time.monotonic() - last_progress > WORKER_WAIT_SECONDS:
                raise
    search = _finished_search(path, initial, bounds, options)
    if search is None:
        raise FileNotFoundError(
            f"Keras Tuner worker: the chief's finished search is not readable at {path}; the chief "
            "and the workers must share the tuner directory (see docs/distributed.md)."
        )
    return search


def _say_goodbye(tuner):
    """Tells a chief that may still be waiting for this worker that it has stopped.

    The chief exits once every worker it has heard from was answered STOPPED; a worker that
    found the finished search in the file (its last request may have timed out after the
    chief received it) asks once more, so that the chief is not left waiting for it.
    """
    try:
        with _rpc_deadline(GOODBYE_RPC_SECONDS):
            tuner.oracle.create_trial(tuner.tuner_id)
    except grpc.RpcError:
        pass  # no chief is serving this call any more: nobody waits


@contextlib.contextmanager
def _rpc_deadline(seconds):
    """Sets Keras Tuner's per-request gRPC deadline (a module constant of its client)."""
    from keras_tuner.src.distribute import oracle_client  # only workers load the gRPC client

    saved = oracle_client.TIMEOUT
    oracle_client.TIMEOUT = seconds
    try:
        yield
    finally:
        oracle_client.TIMEOUT = saved


def distributed_tuning():
    """True when Keras Tuner's distributed mode is set up for this process (chief or worker)."""
    return "KERASTUNER_ORACLE_IP" in os.environ


def _tuner_worker():
    """True in a Keras Tuner worker process (distributed mode, not the chief)."""
    return distributed_tuning() and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", "")


PORTS_PER_RUN = 64
"""Distributed mode: NCS call k of a run uses the port KERASTUNER_ORACLE_PORT + k mod 64."""

_BASE_PORT = []


def _use_port_of_call(call):
    """Points Keras Tuner at this NCS call's own port.

    The chief keeps serving a finished search until its last worker has been told to stop;
    a worker that has moved on to the next call would otherwise reach that old server and
    be told the new search is over too.
    """
    if not _BASE_PORT:
        _BASE_PORT.append(int(os.environ["KERASTUNER_ORACLE_PORT"]))
    os.environ["KERASTUNER_ORACLE_PORT"] = str(_BASE_PORT[0] + call % PORTS_PER_RUN)


def _finished_search(path, initial, bounds, options):
    """The NCS state the chief saved at `path`, if it is there and finished; else None."""
    if not os.path.exists(path):
        return None
    search = NCS(initial, bounds=bounds, **options)
    search.set_state(read_json(path)["ncs"])
    return search if search.done else None


def _bare_search(fitness, initial, bounds, options, directory, project, resume):
    path = os.path.join(directory, f"{project}.json")
    search = NCS(initial, bounds=bounds, **options)
    if resume and os.path.exists(path):
        search.set_state(read_json(path))
    while not search.done:
        search.tell([fitness(x) for x in search.ask()])
        write_json(path, search.get_state())
    return search
