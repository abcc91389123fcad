"""Dynamic Network Surgery (Guo et al. 2016) on masked layers, as OLMP's code runs it.

- The layers: every top-level `Dense` and `Conv2D` becomes a `MaskedDense` / `MaskedConv2D`
  with `straight_through=True`, so a pruned weight still receives its gradient and can
  grow back (splicing).
- The threshold of layer l: `t_l = max(mu_l + c_l * sigma_l, 0)`, where `mu_l` is the mean
  |w| and `sigma_l**2 = E[w**2] - mu_l**2` over the layer's non-zero kernel and bias entries
  pooled, computed once from the starting weights and then frozen (`LayerStatistics`).
- The mask rule, with hysteresis, on the kernel and the bias: a kept entry is pruned when
  |w| <= 0.9 t, a pruned one is spliced back when |w| > 1.1 t (`hysteresis`).
- When: at iteration `it` a layer is triggered with probability `(1 + gamma * it) ** -1`,
  gamma 2e-4 for Dense and 2e-5 for convolutions (`trigger_probability`).

This module holds the math (keras.ops and NumPy) and the layer bookkeeping; running the
updates under a tf.distribute strategy is the training loop's business.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_prune.errors import PruneError
from keras_prune.graph.surgery import layer_from_config
from keras_prune.layers.masked import MaskedConv2D, MaskedDense

__all__ = [
    "GAMMAS",
    "PRUNE_FACTOR",
    "SPLICE_FACTOR",
    "DNSLayers",
    "LayerStatistics",
    "hysteresis",
    "thresholds",
    "to_masked",
    "trigger_probability",
    "weight_pairs",
]

PRUNE_FACTOR = 0.9
"""A kept weight is pruned when |w| <= PRUNE_FACTOR * t."""

SPLICE_FACTOR = 1.1
"""A pruned weight is spliced back when |w| > SPLICE_FACTOR * t."""

_PRUNABLE = {keras.layers.Dense: MaskedDense, keras.layers.Conv2D: MaskedConv2D}

GAMMAS = {MaskedDense: 2e-4, MaskedConv2D: 2e-5}
"""DNS's trigger-schedule gamma per masked layer class (OLMP's prototxts)."""


def hysteresis(weight, prune_mask, threshold):
    """The new 0/1 mask of `weight` at threshold `threshold` (DNS pruning and splicing).

    Args:
        weight: the kernel or bias (tensor or variable).
        prune_mask: its current 0/1 mask, same shape.
        threshold: t, a scalar >= 0.

    Returns:
        A tensor like `prune_mask`: 0 where a kept entry has |w| <= 0.9 t, 1 where a pruned
        entry has |w| > 1.1 t, the old value elsewhere.
    """
    mask = ops.convert_to_tensor(prune_mask)
    magnitude = ops.abs(ops.convert_to_tensor(weight))
    threshold = ops.cast(threshold, magnitude.dtype)
    prune = ops.logical_and(ops.equal(mask, 1), magnitude <= PRUNE_FACTOR * threshold)
    splice = ops.logical_and(ops.equal(mask, 0), magnitude > SPLICE_FACTOR * threshold)
    zeros, ones = ops.zeros_like(mask), ops.ones_like(mask)
    return ops.where(prune, zeros, ops.where(splice, ones, mask))


def thresholds(mu, sigma, crates):
    """`max(mu + c * sigma, 0)` per layer, as float32 (NumPy, elementwise)."""
    t = np.asarray(mu, "float64") + np.asarray(crates, "float64") * np.asarray(sigma, "float64")
    return np.maximum(t, 0.0).astype("float32")


def trigger_probability(gamma, iteration):
    """DNS's chance that a layer updates its mask at `iteration`: `(1 + gamma * iteration) ** -1`."""
    return 1.0 / (1.0 + np.asarray(gamma, "float64") * iteration)


@dataclasses.dataclass(frozen=True)
class LayerStatistics:
    """A layer's frozen weight statistics: mu = mean |w|, sigma = sqrt(E[w**2] - mu**2)."""

    mu: float
    sigma: float

    @classmethod
    def of(cls, arrays):
        """Statistics over the non-zero entries of `arrays` (the masked kernel and bias) pooled.

        Entries that are zero (already pruned, or masked out) do not count, as in OLMP's
        Caffe layers; a layer with no non-zero entry gets mu = sigma = 0.
        """
        values = np.concatenate([np.asarray(a, "float64").ravel() for a in arrays])
        values = values[values != 0]
        if values.size == 0:
            return cls(0.0, 0.0)
        mu = float(np.mean(np.abs(values)))
        return cls(mu, float(np.sqrt(max(np.mean(values**2) - mu**2, 0.0))))


def weight_pairs(layer):
    """`[(kernel, prune_mask), (bias, bias_prune_mask)]` of a masked layer (bias if it has one)."""
    pairs = [(layer.kernel, layer.prune_mask)]
    if layer.use_bias:
        pairs.append((layer.bias, layer.bias_prune_mask))
    return pairs


def prunable_layers(model):
    """Names of `model`'s top-level layers OLMP masks (Dense, Conv2D, or already masked ones).

    Raises:
        PruneError: if there is none.
    """
    masked_types = tuple(_PRUNABLE.values())
    prunable = [layer.name for layer in model.layers if type(layer) in _PRUNABLE or type(layer) in masked_types]
    if not prunable:
        kinds = sorted({type(layer).__name__ for layer in model.layers})
        raise PruneError(
            f"olmp prunes Dense and Conv2D weights, and model {model.name!r} has none at its top "
            f"level. Received: layers of types {kinds}"
        )
    return prunable


def to_masked(model):
    """A copy of `model` whose top-level Dense and Conv2D layers are masked, same weights.

    Masked layers use `straight_through=True`. Layers that are already `MaskedDense` /
    `MaskedConv2D` keep their masks. Every other layer is a fresh copy with the same weights,
    so training the copy never touches `model` (a weightless layer whose config does not
    round-trip is shared as it is: see `layer_from_config`). Build it inside the strategy's scope.

    Raises:
        PruneError: if the model has no top-level Dense or Conv2D layer.
    """
    masked_types = tuple(_PRUNABLE.values())
    prunable = prunable_layers(model)

    def clone(layer):
        config = layer.get_config()
        if type(layer) in _PRUNABLE:
            return _PRUNABLE[type(layer)].from_config({**config, "straight_through": True})
        if type(layer) in masked_types:
            return type(layer).from_config({**config, "straight_through": True})
        return layer_from_config(layer, config)

    copy = keras.models.clone_model(model, clone_function=clone)
    for old in model.layers:
        if not old.weights:
            continue  # e.g. the input layer, whose name the clone does not keep
        new = copy.get_layer(old.name)
        if type(old) in _PRUNABLE:
            new.kernel.assign(old.kernel)
            if old.use_bias:
                new.bias.assign(old.bias)
        else:
            new.set_weights(old.get_weights())
    return copy, prunable


class DNSLayers:
    """The masked layers of a model, in order, with their frozen statistics and trigger gammas.

    Args:
        model: a model made by `to_masked` (or holding masked layers with straight-through).
        names: the names of the layers to prune, in the order c-rates are given.
        statistics: `LayerStatistics` per layer; None computes them now from the current
            weights and masks (the "starting weights": call this before any training).
    """

    def __init__(self, model, names, statistics=None):
        self.layers = [model.get_layer(name) for name in names]
        for layer in self.layers:
            if type(layer) not in GAMMAS or not layer.straight_through:
                raise PruneError(
                    f"Expected a MaskedDense or MaskedConv2D with straight_through=True. "
                    f"Received: {layer.name!r} of type {type(layer).__name__}"
                )
        self.names = list(names)
        self.gammas = np.array([GAMMAS[type(layer)] for layer in self.layers])
        if statistics is None:
            statistics = [LayerStatistics.of(self.masked_values(layer)) for layer in self.layers]
        self.statistics = list(statistics)
        self.sizes = np.array([sum(int(np.prod(w.shape)) for w, _ in weight_pairs(layer)) for layer in self.layers])

    @staticmethod
    def masked_values(layer):
        """`[kernel, bias]` of a masked layer as export keeps them (weights times masks)."""
        return [np.asarray(w.numpy()) * np.asarray(m.numpy()) for w, m in weight_pairs(layer)]

    @property
    def mu(self):
        return np.array([s.mu for s in self.statistics])

    @property
    def sigma(self):
        return np.array([s.sigma for s in self.statistics])

    @property
    def total(self):
        """Weights and biases of all pruned layers together."""
        return int(self.sizes.sum())

    def thresholds(self, crates):
        """Per-layer thresholds `max(mu + c * sigma, 0)` for c-rates `crates` (float32)."""
        return thresholds(self.mu, self.sigma, crates)

    def trigger_probabilities(self, iteration):
        return trigger_probability(self.gammas, iteration)

    def pairs(self):
        """`(layer index, weight, prune_mask)` for every kernel and bias."""
        return [(i, w, m) for i, layer in enumerate(self.layers) for w, m in weight_pairs(layer)]

    def kept(self):
        """Per layer: mask entries equal to 1 (weights and biases)."""
        counts = np.zeros(len(self.layers), "int64")
        for i, _, mask in self.pairs():
            counts[i] += int(np.count_nonzero(np.asarray(mask.numpy())))
        return counts

    def nonzero(self):
        """Per layer: non-zero entries of the masked weights and biases (what export keeps)."""
        counts = np.zeros(len(self.layers), "int64")
        for i, layer in enumerate(self.layers):
            counts[i] = sum(int(np.count_nonzero(v)) for v in self.masked_values(layer))
        return counts
