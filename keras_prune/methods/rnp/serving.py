"""The exported RNP model: a SavedModel whose batch-1 path computes only the chosen groups.

`serve(images)` uses the `flops_bias` variable; `serve_with_bias(images, flops_bias)`
takes it as an input. Both return `logits` and per-layer `actions` (groups computed,
1..k). A batch of one takes the sliced path: each stage is a `tf.switch_case` over k
branches whose convolutions use kernels cut to the kept channels, so skipped groups
are never computed (one image has a trace of its own: static shapes, no dispatch on the
batch size). Larger batches take the masked path (the training computation). Every
BatchNormalization is folded into the conv before it, stem included, as the dense model
is deployed: only the dynamic part differs between the two. The bias is subtracted from
the Q-value of each extra group: raising it trades accuracy for speed at run time,
without retraining.
"""

import itertools
import types

import tensorflow as tf
from keras import ops

from keras_prune.export.fold import fold_batch_norms
from keras_prune.export.latency import measure_latency
from keras_prune.export.report_io import replace_folder
from keras_prune.methods.rnp.backbone import RuntimeBackbone
from keras_prune.methods.rnp.training import rollout

__all__ = ["RNPServing", "export_saved_model", "serving_latency"]


class RNPServing(tf.Module):
    """Backbone + decision network as one servable module.

    Args:
        backbone: a `RuntimeBackbone`.
        decision: its trained `DecisionNet`.
        flops_bias: the default bias of `serve`.
    """

    def __init__(self, backbone, decision, flops_bias=0.0):
        super().__init__(name="rnp")
        # Channel order and groups are unchanged by folding (it is per channel).
        backbone = RuntimeBackbone(fold_batch_norms(backbone.model), backbone.groups)
        self._backbone = backbone
        self.model = backbone.model
        self.decision = decision
        self.flops_bias = tf.Variable(float(flops_bias), trainable=False, name="flops_bias")
        # Kernels and biases of the sliced convs (folded_stage folds what fold_batch_norms left).
        folded = []
        self.folded_kernels, self.folded_biases = [], []
        for t in range(backbone.steps):
            kernel, bias, activation, rest = backbone.folded_stage(t)
            self.folded_kernels.append(tf.Variable(kernel, trainable=False, name=f"stage_{t}_kernel"))
            self.folded_biases.append(tf.Variable(bias, trainable=False, name=f"stage_{t}_bias"))
            folded.append((self.folded_kernels[-1], self.folded_biases[-1], activation, rest))
        self._plan = types.SimpleNamespace(folded=folded)  # not tracked: holds functions and layers
        # Each function is traced for one image first, then for any batch: called with one
        # image, the SavedModel's function takes the first trace (the sliced path, static
        # shapes, no dispatch); the signatures take the second (a tf.cond on the batch size).
        shape = backbone.model.input_shape[1:]
        bias_spec = tf.TensorSpec((), tf.float32, name="flops_bias")
        self.serve = tf.function(self._serve)
        self.serve_with_bias = tf.function(self._serve_with_bias)
        self._signatures = {}
        for batch in (1, None):
            spec = tf.TensorSpec((batch, *shape), tf.float32, name="images")
            self._signatures["serve"] = self.serve.get_concrete_function(spec)
            self._signatures["serve_with_bias"] = self.serve_with_bias.get_concrete_function(spec, bias_spec)
        # What TF Serving, saved_model_cli and converters call unless told otherwise: `serve`, any batch.
        self._signatures["serving_default"] = self._signatures["serve"]

    def _serve(self, images):
        return self._serve_with_bias(images, self.flops_bias)

    def _serve_with_bias(self, images, flops_bias):
        if images.shape[0] == 1:
            logits, actions = self.sliced(images, flops_bias)
        else:
            logits, actions = tf.cond(
                tf.shape(images)[0] == 1,
                lambda: self.sliced(images, flops_bias),
                lambda: self.masked(images, flops_bias),
            )
        return {"logits": logits, "actions": actions + 1}

    def masked(self, images, flops_bias):
        logits, _, actions = rollout(self._backbone, self.decision, images, epsilon=0.0, flops_bias=flops_bias)
        return logits, actions

    def decide(self, t, h, hidden, flops_bias):
        """Step `t` of the decision network on one image's features: (action, next hidden state)."""
        backbone, decision = self._backbone, self.decision
        state = backbone.pad_channels(ops.mean(h, axis=(1, 2)), backbone.state_sizes[t])
        q, hidden = decision.step(t, state, hidden)
        extra_groups = ops.arange(decision.actions, dtype="float32")
        return tf.cast(tf.argmax(q[0] - flops_bias * extra_groups), tf.int32), hidden

    def sliced(self, images, flops_bias):
        """One image, computing only the chosen groups of every stage."""
        backbone = self._backbone
        h = backbone.run_stem(images)
        hidden = self.decision.initial_state(1)
        actions = []
        for t in range(backbone.steps):
            action, hidden = self.decide(t, h, hidden, flops_bias)
            branches = [
                (lambda t=t, c=c, h=h: backbone.run_stage_sliced(t, h, c, self._plan.folded[t]))
                for c in backbone.boundaries[t]
            ]
            h = tf.switch_case(action, branches)
            actions.append(action)
        logits = backbone.run_head(backbone.pad_channels(h, backbone.channels[-1]))
        return logits, tf.reshape(tf.stack(actions), (1, -1))


def export_saved_model(serving, path):
    """Writes `serving` as a SavedModel at `path`, atomically (temporary folder, rename)."""
    return replace_folder(path, lambda tmp: tf.saved_model.save(serving, tmp, signatures=serving._signatures))


def serving_latency(serve, images, *, repeats, batch_size=1, max_seconds=None):
    """Median latency (ms) of `serve(images) -> {"logits", ...}` at `batch_size`, cycling over real inputs.

    The decisions, hence the cost, depend on the input, so a fixed random input would not
    be representative.
    """
    batches = [tf.constant(images[i : i + batch_size]) for i in range(0, len(images) - batch_size + 1, batch_size)]
    if not batches:
        raise ValueError(f"serving_latency needs at least {batch_size} images, got {len(images)}")
    cycle = itertools.cycle(batches)
    probe = types.SimpleNamespace(input_shape=(None, *images.shape[1:]))
    timing = measure_latency(probe, batch_size=batch_size, repeats=repeats, max_seconds=max_seconds,
                             fn=lambda _: serve(next(cycle))["logits"])
    return timing["median_ms"]
