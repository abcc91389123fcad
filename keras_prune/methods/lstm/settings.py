"""The `lstm` method's settings and its reward: one frozen, validated object, no TensorFlow.

The paper's text was not available (docs/PAPERS.md 4): the reward's form, the teacher, the
distillation loss and the controller's size are reconstructions, so each is a setting.
"""

import dataclasses
import math
import numbers

from keras_prune.criteria.registry import BUILT_IN, criterion_names
from keras_prune.errors import PruneError

__all__ = ["CRITERIA", "REWARDS", "TEACHERS", "LSTMSettings", "reward"]

REWARDS = ("gated", "linear", "target")
"""Reward forms (see `reward`)."""

TEACHERS = ("parent", "original")
"""Who teaches a child during recovery: the network it was pruned from, or the pre-trained one."""

CRITERIA = BUILT_IN
"""The command line's channel criteria: the L1 (Li et al.) or L2 norm of the filters that produce
a channel. The Python API takes any name `keras_prune.criteria.register_criterion` added."""


def reward(accuracy, flops_ratio, *, reference_accuracy, form="gated", beta=1.0, tolerance=0.01, penalty=10.0,
           target_flops=None):
    """The controller's reward for a recovered child.

    - "gated" (default): `(1 - flops_ratio) - penalty * max(0, reference_accuracy - accuracy - tolerance)`:
      the FLOPs removed, as long as validation accuracy stays within `tolerance` of the
      pre-trained network's; each point lost beyond that costs `penalty` points of FLOPs.
      It states the goal of the paper's tables ("fewer FLOPs at comparable accuracy") directly.
    - "linear": `accuracy / reference_accuracy - beta * flops_ratio`.
    - "target": `(1 - max(flops_ratio, target_flops)) + beta * (accuracy / reference_accuracy - 1)`
      minus the gated penalty: FLOPs removed count only down to the target, so among children
      at the target the most accurate earns the most. It asks for "the best accuracy at this
      FLOPs budget", the question a comparison at equal FLOPs asks, where "gated" asks for
      "the fewest FLOPs within tolerance" and is satisfied by the first child under the target.

    Args:
        accuracy: the child's validation accuracy after recovery.
        flops_ratio: the child's FLOPs as a fraction of the pre-trained network's.
        reference_accuracy: the pre-trained network's validation accuracy.
        target_flops: the FLOPs ratio "target" aims at (required by that form only).
    """
    loss = max(0.0, reference_accuracy - accuracy - tolerance)
    if form == "gated":
        return (1.0 - flops_ratio) - penalty * loss
    if form == "linear":
        return accuracy / max(reference_accuracy, 1e-12) - beta * flops_ratio
    if form == "target":
        if target_flops is None:
            raise PruneError("The target reward needs target_flops (--target_flops).")
        gain = accuracy / max(reference_accuracy, 1e-12) - 1.0
        return (1.0 - max(flops_ratio, target_flops)) + beta * gain - penalty * loss
    raise PruneError(f"Expected lstm_reward to be one of {REWARDS}. Received: lstm_reward={form!r}")


def _check(condition, name, expected, value):
    if not condition:
        raise PruneError(f"Expected {name} {expected}. Received: {name}={value!r}")


def _integer(value, name, minimum):
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum
    _check(ok, name, f"to be an integer >= {minimum}", value)
    return int(value)


def _real(value, name, check, expected):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and check(value)
    _check(ok, name, expected, value)
    return float(value)


@dataclasses.dataclass(frozen=True)
class LSTMSettings:
    """Everything the search needs, checked once.

    Attributes:
        prune_rate: fraction of a group's *current* channels a "prune" decision removes, in (0, 1).
        recovery_epochs: epochs of teacher-student recovery of every child.
        patience: controller epochs without a better structure before the search stops.
        max_epochs: controller epochs at most.
        target_flops: the search also stops once the best structure has at most this FLOPs ratio
            (with the "gated" and "linear" rewards); the "target" reward aims at it instead.
        parents: how many of the best structures are fed to the controller each epoch.
        children: decision sequences sampled per parent per epoch.
        hidden_units: LSTM width.
        controller_learning_rate: Adam learning rate of the controller.
        reward_form, beta, tolerance, penalty: see `reward` (beta weighs FLOPs in "linear" and
            accuracy in "target").
        teacher: one of `TEACHERS`.
        temperature: distillation temperature T.
        distill_weight: alpha, the weight of the distillation term (1 - alpha: cross-entropy).
        criterion: a name of `keras_prune.criteria.criterion_names()` (default "l1").
        learning_rate: SGD learning rate of recovery.
        seed: seeds the controller and its sampling.
    """

    prune_rate: float = 0.2
    recovery_epochs: int = 10
    patience: int = 10
    max_epochs: int = 100
    target_flops: float = 0.5
    parents: int = 5
    children: int = 5
    hidden_units: int = 64
    controller_learning_rate: float = 0.001
    reward_form: str = "gated"
    beta: float = 1.0
    tolerance: float = 0.01
    penalty: float = 10.0
    teacher: str = "parent"
    temperature: float = 4.0
    distill_weight: float = 0.5
    criterion: str = "l1"
    learning_rate: float = 0.001
    seed: int = 0

    def _set_real(self, field, name, check, expected):
        """Checks a real-valued field and stores it as a float (Keras refuses an int learning rate)."""
        object.__setattr__(self, field, _real(getattr(self, field), name, check, expected))

    def __post_init__(self):
        self._set_real("prune_rate", "prune_rate", lambda v: 0.0 < v < 1.0, "to be in (0, 1)")
        _integer(self.recovery_epochs, "recovery_epochs", 0)
        _integer(self.patience, "patience", 1)
        _integer(self.max_epochs, "lstm_epochs", 1)
        self._set_real("target_flops", "target_flops", lambda v: 0.0 < v <= 1.0, "to be in (0, 1]")
        _integer(self.parents, "lstm_parents", 1)
        _integer(self.children, "lstm_children", 1)
        _integer(self.hidden_units, "lstm_hidden_units", 1)
        self._set_real("controller_learning_rate", "lstm_learning_rate", lambda v: v > 0, "to be > 0")
        _check(self.reward_form in REWARDS, "lstm_reward", f"to be one of {REWARDS}", self.reward_form)
        for name in ("beta", "tolerance", "penalty"):
            self._set_real(name, f"lstm_{name}", lambda v: v >= 0, "to be >= 0")
        _check(self.teacher in TEACHERS, "lstm_teacher", f"to be one of {TEACHERS}", self.teacher)
        self._set_real("temperature", "lstm_temperature", lambda v: v > 0, "to be > 0")
        self._set_real("distill_weight", "lstm_distill_weight", lambda v: 0 <= v <= 1, "to be in [0, 1]")
        _check(self.criterion in criterion_names(), "lstm_criterion",
               f"to be one of {criterion_names()} (keras_prune.criteria.register_criterion adds one; on the command "
               "line, in a module that --custom_modules names)", self.criterion)
        self._set_real("learning_rate", "learning_rate", lambda v: v > 0, "to be > 0")

    @classmethod
    def from_config(cls, config):
        """The settings of a `RunConfig` (its lstm fields, --target_flops, --learning_rate, --seed)."""
        return cls(
            prune_rate=config.prune_rate,
            recovery_epochs=config.recovery_epochs,
            patience=config.patience,
            max_epochs=config.lstm_epochs,
            target_flops=config.target_flops,
            parents=config.lstm_parents,
            children=config.lstm_children,
            hidden_units=config.lstm_hidden_units,
            controller_learning_rate=config.lstm_learning_rate,
            reward_form=config.lstm_reward,
            beta=config.lstm_beta,
            tolerance=config.lstm_tolerance,
            penalty=config.lstm_penalty,
            teacher=config.lstm_teacher,
            temperature=config.lstm_temperature,
            distill_weight=config.lstm_distill_weight,
            criterion=config.lstm_criterion,
            learning_rate=config.learning_rate,
            seed=config.seed,
        )

    def reward(self, accuracy, flops_ratio, reference_accuracy):
        """`reward(...)` with these settings."""
        return reward(
            accuracy,
            flops_ratio,
            reference_accuracy=reference_accuracy,
            form=self.reward_form,
            beta=self.beta,
            tolerance=self.tolerance,
            penalty=self.penalty,
            target_flops=self.target_flops,
        )
