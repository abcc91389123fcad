"""OLMP's settings: one frozen, validated object, and the text parsers the flags share.

Pure Python (no TensorFlow), so the command line can validate `--olmp_*` flags before
any work starts, and the method validates a `RunConfig` given through the API the same way.
"""

import dataclasses
import math
import numbers

from keras_prune.errors import PruneError

__all__ = [
    "CONSTRAINTS",
    "DEATH_PENALTY",
    "INITIAL_CRATE",
    "LR_POLICIES",
    "OLMPSettings",
    "parse_bounds",
    "parse_lr_policy",
    "parse_schedule",
]

INITIAL_CRATE = 0.001
"""Every layer's starting c-rate in the paper's code (raised to the lower bound if above it)."""

DEATH_PENALTY = 1.1
"""The fitness of a candidate that breaks the accuracy constraint: worse than keeping everything (1.0)."""

CONSTRAINTS = ("batch", "validation")
"""Where NCS measures a candidate's accuracy: "batch", the current training batch (the paper), or
"validation", held-out examples the model never trains on (a training batch of a model that fits
its training data is near 100% correct with or without the candidate, so it cannot see what
pruning costs on unseen data)."""

LR_POLICIES = ("inv", "step@N", "fixed")
"""Learning-rate policies: Caffe "inv" (base * (1 + 1e-4 * it) ** -0.75, the LeNets), "step@N"
(x0.1 every N iterations, AlexNet-Caltech uses step@7000) and "fixed"."""


MIN_BOUNDS_WIDTH = 2e-4
"""Twice the margin by which NCS clips a candidate inside its bounds (`NCS(margin=1e-4)`)."""


def parse_bounds(value, *, name="olmp_crate_bounds"):
    """`(lower, upper)` c-rate bounds from "lower,upper" text or a pair of numbers.

    Raises:
        PruneError: if `value` is not two finite numbers with lower < upper.
    """
    parts = value.split(",") if isinstance(value, str) else value
    try:
        lower, upper = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise PruneError(
            f"Expected {name} as 'lower,upper', two numbers (e.g. '0,10'). Received: {name}={value!r}"
        ) from None
    if not (math.isfinite(lower) and math.isfinite(upper) and upper - lower > MIN_BOUNDS_WIDTH):
        raise PruneError(
            f"Expected {name} with finite lower < upper, more than {MIN_BOUNDS_WIDTH:g} apart (NCS keeps "
            f"candidates {MIN_BOUNDS_WIDTH / 2:g} inside them; e.g. '0,10'). Received: {name}={value!r}"
        )
    return lower, upper


def parse_schedule(value, *, name="olmp_sigma"):
    """A piecewise-constant schedule from "v" or "v0@0,v1@i1,..." (value from iteration on).

    Returns:
        A tuple of `(iteration, value)` pairs, iterations strictly increasing from 0.

    Raises:
        PruneError: on malformed text, a first entry not at iteration 0, iterations not
            increasing, or a value that is not a finite number > 0.
    """
    if not isinstance(value, str):
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = str(value)
        else:
            try:
                value = ",".join(f"{v}@{i}" for i, v in value)
            except (TypeError, ValueError):
                raise PruneError(
                    f"Expected {name} as a number, 'value@iteration,...' text or (iteration, value) pairs. "
                    f"Received: {name}={value!r}"
                ) from None
    entries = []
    try:
        for item in value.split(","):
            number, _, start = item.strip().partition("@")
            entries.append((int(start) if start else 0, float(number)))
    except ValueError:
        raise PruneError(
            f"Expected {name} as 'value' or 'value@iteration,...' (e.g. '5@0,0.5@10000'). "
            f"Received: {name}={value!r}"
        ) from None
    starts = [start for start, _ in entries]
    if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])):
        raise PruneError(
            f"Expected {name} to start at iteration 0 and list increasing iterations. Received: {name}={value!r}"
        )
    if not all(math.isfinite(v) and v > 0 for _, v in entries):
        raise PruneError(f"Expected every {name} value to be > 0. Received: {name}={value!r}")
    return tuple(entries)


def parse_lr_policy(value, *, name="olmp_lr_policy"):
    """`("inv", 0)`, `("fixed", 0)` or `("step", N)` from "inv", "fixed" or "step@N".

    Raises:
        PruneError: for any other text.
    """
    if not isinstance(value, str):  # an `(kind, every)` pair, as `OLMPSettings.lr_policy` holds
        try:
            kind, every = value
            value = kind if kind in ("inv", "fixed") and every == 0 else f"{kind}@{every}"
        except (TypeError, ValueError):
            pass  # reported below
    text = str(value).strip()
    if text in ("inv", "fixed"):
        return text, 0
    kind, _, every = text.partition("@")
    if kind == "step" and every.isdigit() and int(every) > 0:
        return "step", int(every)
    raise PruneError(f"Expected {name} to be one of {LR_POLICIES} with N > 0. Received: {name}={value!r}")


def _integer(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise PruneError(f"Expected {name} to be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class OLMPSettings:
    """Everything the OLMP loop needs, checked once. Defaults are the paper's LeNet-300-100 run.

    Attributes:
        delta: the accuracy an NCS candidate may lose against the current model, in (0, 1).
        constraint: where that accuracy is measured, one of `CONSTRAINTS`.
        constraint_examples: with constraint "validation", how many held-out examples each NCS
            call measures (the next ones of the validation split, wrapping around).
        crate_bounds: `(lower, upper)` of every c-rate.
        iterations: K, the total SGD iterations (pruning and adjusting, then retraining).
        prune_stop: the iteration from which masks are frozen (no more triggers, no NCS).
        prune_interval: an NCS call may happen every this many iterations.
        population: N, NCS's number of search processes.
        budget: Tmax, NCS function evaluations per call.
        sigma: NCS's initial step size as `((iteration, value), ...)`, piecewise constant.
        legacy_ncs: reproduce the released OLMP NCS (its population never moves).
        lr_policy: `(kind, every)`, see `LR_POLICIES`.
        learning_rate: the base learning rate of masked SGD.
        weight_decay: L2 weight decay, added to the gradient of every weight and bias.
        use_tuner: run each NCS call as a Keras Tuner search (else bare NCS ask/tell).
        seed: seeds the triggers and the searches.
    """

    delta: float = 0.08
    constraint: str = "batch"
    constraint_examples: int = 256
    crate_bounds: tuple = (0.0, 10.0)
    iterations: int = 30001
    prune_stop: int = 15000
    prune_interval: int = 1000
    population: int = 10
    budget: int = 1600
    sigma: tuple = ((0, 5.0),)
    legacy_ncs: bool = False
    lr_policy: tuple = ("inv", 0)
    learning_rate: float = 0.01
    weight_decay: float = 5e-4
    use_tuner: bool = True
    seed: int = 0

    def __post_init__(self):
        delta = self.delta
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not 0.0 < delta < 1.0:
            raise PruneError(
                "Expected olmp_delta in (0, 1): the fraction of accuracy an NCS candidate "
                f"may lose. Received: olmp_delta={delta!r}"
            )
        if self.constraint not in CONSTRAINTS:
            raise PruneError(
                f"Expected olmp_constraint to be one of {CONSTRAINTS}. Received: olmp_constraint={self.constraint!r}"
            )
        _integer(self.constraint_examples, "olmp_constraint_examples", 1)
        object.__setattr__(self, "crate_bounds", parse_bounds(self.crate_bounds))
        object.__setattr__(self, "sigma", parse_schedule(self.sigma))
        object.__setattr__(self, "lr_policy", parse_lr_policy(self.lr_policy))
        iterations = _integer(self.iterations, "olmp_iterations", 1)
        stop = _integer(self.prune_stop, "olmp_prune_stop", 0)
        if stop > iterations:
            raise PruneError(
                "Expected olmp_prune_stop <= olmp_iterations (masks freeze within the run). "
                f"Received: olmp_prune_stop={stop}, olmp_iterations={iterations}"
            )
        _integer(self.prune_interval, "olmp_prune_interval", 1)
        population = _integer(self.population, "olmp_population", 2)
        budget = _integer(self.budget, "olmp_budget", 1)
        if budget < population + 1:
            raise PruneError(
                "Expected olmp_budget >= olmp_population + 1 (the start point and one generation). "
                f"Received: olmp_budget={budget}, olmp_population={population}"
            )
        for name in ("learning_rate", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise PruneError(f"Expected {name} >= 0. Received: {name}={value!r}")

    @classmethod
    def from_config(cls, config):
        """The settings of a `RunConfig` (its `olmp_*` fields, learning rate, weight decay, seed)."""
        return cls(
            delta=config.olmp_delta,
            constraint=config.olmp_constraint,
            constraint_examples=config.olmp_constraint_examples,
            crate_bounds=config.olmp_crate_bounds,
            iterations=config.olmp_iterations,
            prune_stop=config.olmp_prune_stop,
            prune_interval=config.olmp_prune_interval,
            population=config.olmp_population,
            budget=config.olmp_budget,
            sigma=config.olmp_sigma,
            legacy_ncs=config.olmp_legacy_ncs,
            lr_policy=config.olmp_lr_policy,
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            use_tuner=config.olmp_tuner,
            seed=config.seed,
        )

    @property
    def initial_crate(self):
        """The paper's starting c-rate, 0.001, moved inside `crate_bounds` if they exclude it."""
        lower, upper = self.crate_bounds
        return min(max(INITIAL_CRATE, lower), upper)

    def sigma_at(self, iteration):
        """NCS's initial step size for a call at `iteration`."""
        value = self.sigma[0][1]
        for start, v in self.sigma:
            if iteration >= start:
                value = v
        return value

    def as_dict(self):
        """A JSON-able dict (for the report and for checking that a resumed run matches)."""
        return {
            **dataclasses.asdict(self),
            "crate_bounds": list(self.crate_bounds),
            "sigma": [list(entry) for entry in self.sigma],
            "lr_policy": list(self.lr_policy),
        }
