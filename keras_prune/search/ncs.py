"""Negatively Correlated Search (NCS-C, Tang, Yang & Yao 2016): a pure NumPy ask/tell minimiser.

N (1+1)-search processes run side by side. Process i keeps a mean `x_i`, per-dimension
step sizes `sigma_i` and the fitness `f(x_i)`. Each generation every process proposes
`x'_i = x_i + sigma_i * N(0, I)` and keeps it when it is good enough *and* far enough
(in Bhattacharyya distance) from the other processes; a 1/5 success rule adapts the
step sizes. This follows the reference MATLAB `NCS.m` and OLMP's `ncs.py`.
"""

import dataclasses

import numpy as np

from keras_prune.search.bhattacharyya import bhattacharyya_min

__all__ = ["NCS", "NCSResult", "minimize"]

_BOUNDARIES = ("clip", "reflect")


@dataclasses.dataclass(frozen=True)
class NCSResult:
    """The best point an NCS run found.

    Attributes:
        x: the best-so-far point, shape `(dimension,)`.
        fitness: its fitness, `f(x)`.
        evaluations: function evaluations told to the search.
        generations: completed generations.
        trajectory: best-so-far fitness after the initial evaluation (index 0) and
            after each generation g (index g).
    """

    x: np.ndarray
    fitness: float
    evaluations: int
    generations: int
    trajectory: list


class NCS:
    """NCS-C minimiser with an ask/tell interface and an exact, JSON-able state.

    The first `ask()` returns the initial points to evaluate (one row if `initial` is a
    single point, whose fitness is then shared by the N copies, as OLMP does; N rows for
    a population). Every later `ask()` returns one generation of N offspring. `tell()`
    takes their fitness in the same order. Asking again before telling returns the same
    candidates, so an interrupted evaluation can simply be redone.

    Budget: a generation starts only if its N evaluations fit in `budget`, so the search
    never spends more than `budget` evaluations (initial ones included). With
    `legacy_olmp=True` the released OLMP accounting is used instead (the initial
    evaluation counts as N and generations run while that count is at most `budget`):
    `budget=1600, population_size=10` then gives OLMP's 160 generations.

    Args:
        initial: a point, shape `(dimension,)`, copied `population_size` times; or a
            population, shape `(population_size, dimension)`. Must lie within `bounds`.
        bounds: `(lower, upper)`, scalars or arrays of shape `(dimension,)`.
        budget: the number of function evaluations the search may spend (Tmax).
        population_size: N, the number of search processes (at least 2). Defaults to
            the rows of a population `initial`, else 10.
        sigma: initial step sizes: a scalar, `(dimension,)` or `(N, dimension)`.
            Defaults to `(upper - lower) / N`, the reference code's choice.
        r: step-size factor of the 1/5 success rule.
        epoch: generations between step-size updates. Defaults to N.
        lambda_sigma: initial standard deviation of the replacement threshold lambda;
            it decreases linearly to 0 over `budget / N` generations.
        boundary: "clip" (OLMP: out-of-range values become `lower + margin` or
            `upper - margin`) or "reflect" (reference MATLAB: mirror at the bound, then
            clip to it).
        margin: the inward offset used by "clip".
        legacy_olmp: reproduce the released OLMP code, whose replacement also requires
            `fitness < 0`: with non-negative fitness the population never moves and every
            step size shrinks by `r` each epoch. Also switches to OLMP's budget accounting.
        seed: None, an int, or a `numpy.random.Generator` (used as is, and advanced).
    """

    def __init__(self, initial, *, bounds, budget, population_size=None, sigma=None, r=0.99,
                 epoch=None, lambda_sigma=0.1, boundary="clip", margin=1e-4, legacy_olmp=False,
                 seed=None):
        initial = np.array(initial, dtype="float64")
        if initial.ndim not in (1, 2) or initial.size == 0:
            raise ValueError(
                "Expected `initial` to be a point (dimension,) or a population "
                f"(population_size, dimension). Received: initial.shape={initial.shape}"
            )
        if initial.ndim == 2:
            if population_size is not None and population_size != initial.shape[0]:
                raise ValueError(
                    "Expected `population_size` to match the rows of `initial`. Received: "
                    f"population_size={population_size}, initial.shape={initial.shape}"
                )
            population_size = initial.shape[0]
        population_size = 10 if population_size is None else population_size
        dimension = initial.shape[-1]
        self._configure(dict(
            dimension=int(dimension), population_size=population_size,
            lower=_vector(bounds[0], dimension, "bounds[0]"),
            upper=_vector(bounds[1], dimension, "bounds[1]"),
            budget=budget, r=r, epoch=population_size if epoch is None else epoch,
            lambda_sigma=lambda_sigma, boundary=boundary, margin=margin,
            legacy_olmp=bool(legacy_olmp),
        ))
        if np.any(initial < self._lower) or np.any(initial > self._upper):
            raise ValueError(
                f"Expected `initial` within `bounds`. Received: initial={initial.tolist()}")
        n = self._n
        population = np.tile(initial, (n, 1)) if initial.ndim == 1 else initial.copy()
        sigma = (self._upper - self._lower) / n if sigma is None else sigma
        sigma = np.broadcast_to(np.array(sigma, dtype="float64"), (n, dimension)).copy()
        if not np.all(np.isfinite(sigma) & (sigma > 0)):
            raise ValueError(f"Expected `sigma` > 0 and finite. Received: sigma={sigma.tolist()}")
        if not isinstance(seed, np.random.Generator):
            seed = np.random.default_rng(seed)
        self._rng = seed
        self._population, self._sigma = population, sigma
        self._fitness = None
        self._best_x, self._best_fitness = None, None
        self._successes = np.zeros(n, dtype="int64")
        self._generation, self._evaluations = 0, 0
        self._initial_evaluations = 1 if initial.ndim == 1 else n
        if budget < self._initial_evaluations:
            raise ValueError(
                f"Expected `budget` >= the {self._initial_evaluations} initial evaluation(s). "
                f"Received: budget={budget}")
        self._pending = None
        self._trajectory = []

    def _configure(self, config):
        n, d = config["population_size"], config["dimension"]
        if not isinstance(n, (int, np.integer)) or n < 2:
            raise ValueError(
                f"Expected `population_size` to be an int >= 2. Received: population_size={n!r}")
        lower, upper = np.array(config["lower"], "float64"), np.array(config["upper"], "float64")
        if lower.shape != (d,) or upper.shape != (d,) or not np.all(lower < upper):
            raise ValueError(
                f"Expected `bounds` with lower < upper. Received: bounds=({lower}, {upper})")
        if config["boundary"] not in _BOUNDARIES:
            raise ValueError(
                f"Expected `boundary` in {_BOUNDARIES}. Received: boundary={config['boundary']!r}")
        if config["boundary"] == "clip" and not np.all(upper - lower > 2 * config["margin"]):
            raise ValueError(
                f"Expected `bounds` wider than 2 * margin. Received: margin={config['margin']}")
        if not 0 < config["r"] <= 1:
            raise ValueError(f"Expected 0 < `r` <= 1. Received: r={config['r']}")
        for name in ("budget", "epoch"):
            if not isinstance(config[name], (int, np.integer)) or config[name] < 1:
                raise ValueError(
                    f"Expected `{name}` to be a positive int. Received: {name}={config[name]!r}")
        self._config = dict(config, lower=lower.tolist(), upper=upper.tolist(), population_size=int(n),
                            budget=int(config["budget"]), epoch=int(config["epoch"]))
        self._n, self._lower, self._upper = int(n), lower, upper

    def get_config(self):
        """The settings (not the run state) as a JSON-able dict."""
        return dict(self._config)

    # ----------------------------------------------------------------- ask / tell

    @property
    def done(self):
        """True once no further generation fits in the budget (nothing left to ask)."""
        if self._fitness is None or self._pending is not None:
            return False
        return self._generation >= self._max_generations()

    def _max_generations(self):
        budget, n = self._config["budget"], self._n
        if self._config["legacy_olmp"]:
            # OLMP: FES starts at N and a generation runs while FES <= Tmax.
            return max(0, budget // n)
        return max(0, (budget - self._initial_evaluations) // n)

    @property
    def planned_evaluations(self):
        """How many evaluations the whole run will ask for."""
        return self._initial_evaluations + self._n * self._max_generations()

    def ask(self):
        """The candidates to evaluate next, shape `(k, dimension)` (a copy).

        Raises:
            RuntimeError: if the search is `done`.
        """
        if self._pending is None:
            if self.done:
                raise RuntimeError("The NCS budget is exhausted; check `done` before `ask()`.")
            if self._fitness is None:
                self._pending = self._population[: self._initial_evaluations].copy()
            else:
                noise = self._rng.standard_normal(self._population.shape)
                self._pending = self._bound(self._population + self._sigma * noise)
        return self._pending.copy()

    def tell(self, fitness):
        """Reports the fitness of the last `ask()`'s candidates, in the same order.

        Args:
            fitness: finite numbers, one per candidate (smaller is better). An infeasible
                candidate should get a large finite value (a death penalty).
        """
        if self._pending is None:
            raise RuntimeError("`tell()` needs a preceding `ask()`.")
        fitness = np.array(fitness, dtype="float64").reshape(-1)
        if fitness.shape != (len(self._pending),):
            raise ValueError(
                f"Expected {len(self._pending)} fitness values, one per asked candidate. "
                f"Received: fitness.shape={fitness.shape}"
            )
        if not np.all(np.isfinite(fitness)):
            raise ValueError(
                "Expected finite fitness values (give infeasible candidates a large finite "
                f"value). Received: fitness={fitness.tolist()}"
            )
        candidates, self._pending = self._pending, None
        self._evaluations += len(fitness)
        self._update_best(candidates, fitness)
        if self._fitness is None:
            self._fitness = np.resize(fitness, self._n)
        else:
            self._generation += 1
            self._select(candidates, fitness)
        self._trajectory.append(self._best_fitness)

    def _update_best(self, candidates, fitness):
        i = int(np.argmin(fitness))
        if self._best_fitness is None or fitness[i] < self._best_fitness:
            self._best_fitness, self._best_x = float(fitness[i]), candidates[i].copy()

    def _select(self, offspring, offspring_fitness):
        """One NCS-C replacement step and, at the end of an epoch, the 1/5 rule."""
        # Normalised fitness of the offspring (F'_i); a 0/0 (parent and offspring both at
        # the best-so-far value) is a tie, so fitness is neutral and diversity decides.
        parent_gap = self._fitness - self._best_fitness
        offspring_gap = offspring_fitness - self._best_fitness
        norm_fitness = _share(offspring_gap, parent_gap + offspring_gap)
        # Normalised diversity (C'_i): distance of offspring i and of parent i to the
        # nearest other parent, each keeping process i's step sizes.
        parent_corr = bhattacharyya_min(self._population, self._population, self._sigma)
        offspring_corr = bhattacharyya_min(offspring, self._population, self._sigma)
        norm_corr = _share(offspring_corr, parent_corr + offspring_corr)
        spread = self._config["lambda_sigma"] * (
            1 - (self._generation - 1) / (self._config["budget"] / self._n))
        lam = 1 + max(spread, 0.0) * self._rng.standard_normal(self._n)
        replace = lam * norm_corr > norm_fitness
        if self._config["legacy_olmp"]:
            replace &= offspring_fitness < 0
        self._population[replace] = offspring[replace]
        self._fitness[replace] = offspring_fitness[replace]
        self._successes += replace
        if self._generation % self._config["epoch"] == 0:
            # 1/5 rule on integers: success rate s/epoch compared with 1/5 exactly.
            rate = 5 * self._successes - self._config["epoch"]
            r = self._config["r"]
            self._sigma[rate > 0] /= r
            self._sigma[rate < 0] *= r
            self._successes[:] = 0

    def _bound(self, x):
        lower, upper = self._lower, self._upper
        if self._config["boundary"] == "clip":
            margin = self._config["margin"]
            return np.where(x < lower, lower + margin, np.where(x > upper, upper - margin, x))
        x = np.where(x < lower, 2 * lower - x, x)
        x = np.where(x > upper, 2 * upper - x, x)
        return np.clip(x, lower, upper)

    # ----------------------------------------------------------------- read-outs

    @property
    def population(self):
        """The current means `x_i`, shape `(N, dimension)` (a copy)."""
        return self._population.copy()

    @property
    def sigma(self):
        """The current step sizes, shape `(N, dimension)` (a copy)."""
        return self._sigma.copy()

    @property
    def pending(self):
        """The asked candidates still waiting for `tell()` (a copy), or None."""
        return None if self._pending is None else self._pending.copy()

    @property
    def fitness(self):
        """`f(x_i)` per process (a copy), None before the initial `tell()`."""
        return None if self._fitness is None else self._fitness.copy()

    @property
    def generation(self):
        return self._generation

    @property
    def evaluations(self):
        """Function evaluations told so far (the initial ones included)."""
        return self._evaluations

    @property
    def trajectory(self):
        """Best-so-far fitness after initialisation (index 0) and after each generation."""
        return list(self._trajectory)

    def result(self):
        """The best-so-far point as an `NCSResult` (needs at least one `tell()`)."""
        if self._best_fitness is None:
            raise RuntimeError("No fitness has been told yet; call `ask()` and `tell()` first.")
        return NCSResult(x=self._best_x.copy(), fitness=self._best_fitness,
                         evaluations=self._evaluations, generations=self._generation,
                         trajectory=self.trajectory)

    # ----------------------------------------------------------------- state

    def get_state(self):
        """The settings and the full run state (RNG included) as a JSON-able dict."""
        return {
            "config": self.get_config(),
            "population": self._population.tolist(),
            "sigma": self._sigma.tolist(),
            "fitness": None if self._fitness is None else self._fitness.tolist(),
            "best_x": None if self._best_x is None else self._best_x.tolist(),
            "best_fitness": self._best_fitness,
            "successes": self._successes.tolist(),
            "generation": self._generation,
            "evaluations": self._evaluations,
            "initial_evaluations": self._initial_evaluations,
            "pending": None if self._pending is None else self._pending.tolist(),
            "trajectory": list(self._trajectory),
            "rng": _rng_state(self._rng),
        }

    def set_state(self, state):
        """Restores a `get_state()` dict; the search then continues exactly.

        Raises:
            ValueError: if the state was saved with different settings.
        """
        config = self.get_config()
        for key, value in state["config"].items():
            if config.get(key) != value:
                raise ValueError(
                    f"The saved NCS state has a different `{key}`. Expected: {config.get(key)!r}. "
                    f"Received: {key}={value!r}"
                )
        self._restore(state)

    @classmethod
    def from_state(cls, state):
        """A new `NCS` rebuilt from a `get_state()` dict alone."""
        search = cls.__new__(cls)
        search._configure(dict(state["config"]))
        search._rng = np.random.Generator(getattr(np.random, state["rng"]["bit_generator"])())
        search._restore(state)
        return search

    def _restore(self, state):
        self._population = _array(state["population"])
        self._sigma = _array(state["sigma"])
        self._fitness = _array(state["fitness"])
        self._best_x = _array(state["best_x"])
        self._best_fitness = state["best_fitness"]
        self._successes = _array(state["successes"], "int64")
        self._generation = int(state["generation"])
        self._evaluations = int(state["evaluations"])
        self._initial_evaluations = int(state["initial_evaluations"])
        self._pending = _array(state["pending"])
        self._trajectory = list(state["trajectory"])
        self._rng.bit_generator.state = state["rng"]


def minimize(fn, initial, **options):
    """Minimises `fn` with NCS until the budget is spent.

    Args:
        fn: `fn(x) -> float` for a point `x` of shape `(dimension,)`.
        initial: see `NCS`.
        **options: keyword arguments of `NCS` (`bounds` and `budget` are required).

    Returns:
        An `NCSResult`.
    """
    search = NCS(initial, **options)
    while not search.done:
        search.tell([fn(x) for x in search.ask()])
    return search.result()


def _share(part, total):
    """part / total, with 0/0 read as an even split (1/2)."""
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, part / safe, 0.5)


def _vector(value, dimension, name):
    value = np.array(value, dtype="float64")
    if value.ndim == 0:
        return np.full(dimension, float(value))
    if value.shape != (dimension,):
        raise ValueError(
            f"Expected `{name}` to be a scalar or of shape ({dimension},). Received: {value.shape}")
    return value


def _array(value, dtype="float64"):
    return None if value is None else np.array(value, dtype)


def _rng_state(rng):
    """The generator's state with arrays as lists (MT19937 keeps its key in an array)."""
    return _plain(rng.bit_generator.state)


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
