"""Named channel criteria: how a method that cuts channels inside a group ranks them.

A criterion maps `(graph, group)` to one score per channel of the group; the channels
with the highest scores are kept. "l1" and "l2" are the norms of the filters that produce
each channel (`filter_norms`). `register_criterion` adds another under a name that a
method's setting can then select (for `lstm`: `RunConfig(lstm_criterion=...)`), so a run's
flags stay plain strings that its report and `--resume` can record and check.
"""

import functools

import numpy as np

from keras_prune.criteria.norms import filter_norms
from keras_prune.errors import PruneError

__all__ = ["channel_scores", "criterion_names", "register_criterion"]

BUILT_IN = ("l1", "l2")
"""The criteria the command line offers."""

_CRITERIA = {
    "l1": functools.partial(filter_norms, order=1),
    "l2": functools.partial(filter_norms, order=2),
}


def register_criterion(name, score_fn, *, overwrite=False):
    """Makes `score_fn(graph, group) -> scores` selectable as criterion `name`.

    Raises:
        ValueError: if `name` is not a non-empty string, `score_fn` is not callable, or
            `name` is taken and `overwrite` is False (built-ins cannot be replaced).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Expected a criterion name as a non-empty string. Received: name={name!r}")
    if not callable(score_fn):
        raise ValueError(f"Expected score_fn to be callable(graph, group). Received: {score_fn!r}")
    if name in BUILT_IN or (name in _CRITERIA and not overwrite):
        raise ValueError(f"A channel criterion named {name!r} exists already; choose another name"
                         f"{'' if name in BUILT_IN else ' or pass overwrite=True'}.")
    _CRITERIA[name] = score_fn


def criterion_names():
    """The names `channel_scores` accepts, the built-in ones first."""
    return tuple(_CRITERIA)


def channel_scores(graph, group, name="l1"):
    """One float score per channel of `group` by criterion `name` (higher is kept)."""
    if name not in _CRITERIA:
        raise PruneError(f"Unknown channel criterion {name!r}; known: {', '.join(_CRITERIA)} "
                         "(keras_prune.criteria.register_criterion adds one).")
    scores = np.asarray(_CRITERIA[name](graph, group), dtype="float64")
    if scores.shape != (group.size,) or not np.all(np.isfinite(scores)):
        raise PruneError(f"Channel criterion {name!r} must return {group.size} finite scores for group "
                         f"{group.id!r}. Received: shape {scores.shape}.")
    return scores
