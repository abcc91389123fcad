"""Masked SGD under a tf.distribute strategy: OLMP's TensorFlow edge.

Three compiled functions, built once:
- `step`: the mask update of the triggered layers (cross-replica, in-graph), then one SGD
  step on a distributed batch (replica context, gradients summed across replicas);
- `update_masks`: the mask update alone (before and after an NCS call);
- `evaluate`: batch accuracy and kept count of the model *as if* the triggered layers'
  masks were updated with candidate thresholds. The candidate masks are fed through a
  `keras.StatelessScope`, so the mask variables are never written: the snapshot the search
  evaluates against cannot drift, and a crash in the middle of a candidate leaves nothing
  to restore.

The solver is Caffe's: SGD with momentum 0.9, L2 weight decay added to the gradient of
every weight (pruned or not), biases at twice the learning rate (`lr_mult: 2` in OLMP's
prototxts), and the "inv" or "step" learning-rate policy.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_prune.errors import PruneError
from keras_prune.export.report_io import variable_arrays
from keras_prune.methods.olmp.dns import hysteresis

__all__ = ["CaffeInverseDecay", "MaskedSGD", "learning_rate_schedule"]

_SUM = tf.distribute.ReduceOp.SUM


@keras.saving.register_keras_serializable(package="keras_prune")
class CaffeInverseDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Caffe's "inv" policy: `lr * (1 + gamma * step) ** -power`.

    Args:
        initial_learning_rate: the base learning rate.
        gamma: the policy's gamma (OLMP's LeNet solvers: 1e-4).
        power: the policy's power (0.75).
    """

    def __init__(self, initial_learning_rate, gamma=1e-4, power=0.75):
        self.initial_learning_rate = float(initial_learning_rate)
        self.gamma = float(gamma)
        self.power = float(power)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        return self.initial_learning_rate * keras.ops.power(1.0 + self.gamma * step, -self.power)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "gamma": self.gamma, "power": self.power}


def learning_rate_schedule(learning_rate, policy):
    """The learning rate of `policy` = `(kind, every)`: "inv", "step" (x0.1 every N) or "fixed"."""
    kind, every = policy
    if kind == "inv":
        return CaffeInverseDecay(learning_rate)
    if kind == "step":
        return keras.optimizers.schedules.ExponentialDecay(learning_rate, every, 0.1, staircase=True)
    if kind == "fixed":
        return learning_rate
    raise ValueError(f"Expected a policy 'inv', 'step' or 'fixed'. Received: policy={policy!r}")


def _correct(logits, labels):
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
    return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.int64))


class MaskedSGD:
    """Trains and evaluates a DNS-masked model under `strategy` (create it in no scope).

    Args:
        model: the masked model (built inside `strategy.scope()`).
        dns: its `DNSLayers`.
        strategy: the tf.distribute strategy.
        learning_rate: the base learning rate.
        lr_policy: `(kind, every)`, see `learning_rate_schedule`.
        weight_decay: L2 coefficient.
        momentum: SGD momentum.
        bias_lr_mult: learning-rate multiplier of the pruned layers' biases.
    """

    def __init__(self, model, dns, strategy, *, learning_rate, lr_policy, weight_decay, momentum=0.9,
                 bias_lr_mult=2.0):
        self.model, self.dns, self.strategy = model, dns, strategy
        self.weight_decay = float(weight_decay)
        self.schedule = learning_rate_schedule(learning_rate, lr_policy)
        self._variables = list(model.trainable_variables)
        with strategy.scope():
            self.optimizer = keras.optimizers.SGD(self.schedule, momentum=momentum)
            self.optimizer.build(self._variables)
        biases = {id(layer.bias) for layer in dns.layers if layer.use_bias}
        self._multipliers = [bias_lr_mult if id(v) in biases else 1.0 for v in self._variables]
        self._step = tf.function(self._distributed_step, reduce_retracing=True)
        self._update = tf.function(self._update_masks)
        self._evaluate = tf.function(self._distributed_evaluate, reduce_retracing=True)

    # ----------------------------------------------------------------- data

    def iterator(self, dataset):
        """An endless iterator of distributed batches of `dataset`."""
        return iter(self.strategy.experimental_distribute_dataset(dataset.repeat()))

    def gather(self, x, y):
        """A distributed batch as one NumPy global batch `(x, y)`: every worker's replicas, in
        replica order (a worker's local results would hold only its own share of the batch)."""
        return np.asarray(self.strategy.gather(x, axis=0)), np.asarray(self.strategy.gather(y, axis=0))

    def distribute(self, x, y):
        """A NumPy global batch split evenly across the replicas."""
        n = self.strategy.num_replicas_in_sync

        def split(array):
            parts = np.array_split(array, n)
            return self.strategy.experimental_distribute_values_from_function(
                lambda context: tf.convert_to_tensor(parts[context.replica_id_in_sync_group])
            )

        return split(x), split(y)

    # ----------------------------------------------------------------- public steps

    def step(self, x, y, thresholds, triggered):
        """Updates the triggered layers' masks, then one SGD step on the distributed batch.

        Returns:
            `(loss, correct, count)` of the batch as scalar tensors (read them only when logging).
        """
        return self._step(x, y, tf.constant(thresholds, tf.float32), tf.constant(triggered, tf.bool))

    def update_masks(self, thresholds, triggered):
        """Applies DNS's hysteresis with `thresholds` to the triggered layers' masks."""
        self._update(tf.constant(thresholds, tf.float32), tf.constant(triggered, tf.bool))

    def evaluate(self, x, y, thresholds, triggered):
        """`(accuracy, kept)` of the distributed batch with candidate masks; masks stay as they are.

        The triggered layers' candidate masks are `hysteresis(w, current mask, threshold)`;
        the other layers use their current masks. `kept` counts mask entries equal to 1 over
        all pruned layers.
        """
        correct, count, kept = self._evaluate(
            x, y, tf.constant(thresholds, tf.float32), tf.constant(triggered, tf.bool)
        )
        count = int(count)
        return (int(correct) / count if count else 0.0), int(kept)

    @property
    def iterations(self):
        return int(self.optimizer.iterations.numpy())

    def learning_rate(self):
        """The current learning rate (for logs)."""
        if callable(self.schedule):
            return float(self.schedule(self.optimizer.iterations))
        return float(self.schedule)

    # ----------------------------------------------------------------- graphs

    def _update_masks(self, thresholds, triggered):
        for index, weight, mask in self.dns.pairs():

            def update(weight=weight, mask=mask, threshold=thresholds[index]):
                mask.assign(hysteresis(weight, mask, threshold))
                return tf.constant(True)

            tf.cond(triggered[index], update, lambda: tf.constant(False))

    def _replica_step(self, x, y):
        context = tf.distribute.get_replica_context()
        count = context.all_reduce(_SUM, tf.cast(tf.shape(y)[0], tf.float32))
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            losses = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            loss = tf.reduce_sum(losses) / tf.maximum(count, 1.0)
        gradients = tape.gradient(loss, self._variables)
        # The optimizer sums gradients over replicas, so each adds its share of the decay.
        decay = self.weight_decay / context.num_replicas_in_sync
        updates = [
            (multiplier * (gradient + decay * variable.value), variable)
            for gradient, variable, multiplier in zip(gradients, self._variables, self._multipliers)
            if gradient is not None
        ]
        self.optimizer.apply_gradients(updates)
        return loss, _correct(logits, y), tf.cast(tf.shape(y)[0], tf.int64)

    def _distributed_step(self, x, y, thresholds, triggered):
        self._update_masks(thresholds, triggered)
        results = self.strategy.run(self._replica_step, args=(x, y))
        return tuple(self.strategy.reduce(_SUM, value, axis=None) for value in results)

    def _replica_evaluate(self, x, y, thresholds, triggered):
        mapping, kept = [], []
        for index, weight, mask in self.dns.pairs():
            candidate = tf.cond(
                triggered[index],
                lambda weight=weight, mask=mask, threshold=thresholds[index]: hysteresis(weight, mask, threshold),
                lambda mask=mask: tf.identity(mask.value),
            )
            mapping.append((mask, candidate))
            kept.append(tf.math.count_nonzero(candidate, dtype=tf.int64))
        with keras.StatelessScope(state_mapping=mapping):
            logits = self.model(x, training=False)
        return _correct(logits, y), tf.cast(tf.shape(y)[0], tf.int64), tf.add_n(kept)

    def _distributed_evaluate(self, x, y, thresholds, triggered):
        correct, count, kept = self.strategy.run(self._replica_evaluate, args=(x, y, thresholds, triggered))
        reduce = self.strategy.reduce
        return (reduce(_SUM, correct, axis=None), reduce(_SUM, count, axis=None),
                self.strategy.experimental_local_results(kept)[0])

    # ----------------------------------------------------------------- state

    def state_arrays(self):
        """Every model and optimizer variable as NumPy arrays (for a checkpoint)."""
        arrays = variable_arrays(self.model.weights, "model/")
        return {**arrays, **variable_arrays(self.optimizer.variables, "optimizer/")}

    def restore_arrays(self, arrays):
        """Assigns arrays saved by `state_arrays` back (on every replica).

        Raises:
            PruneError: if they do not fit this model and optimizer.
        """
        targets = [(f"model/{i}", v) for i, v in enumerate(self.model.weights)]
        targets += [(f"optimizer/{i}", v) for i, v in enumerate(self.optimizer.variables)]
        saved = {k for k in arrays if k.startswith(("model/", "optimizer/"))}
        if saved != {key for key, _ in targets} or any(arrays[k].shape != tuple(v.shape) for k, v in targets):
            raise PruneError(
                "The OLMP checkpoint does not fit this model (different layers or shapes); "
                "resume with the same --model and settings, or start a new --output_dir."
            )
        for key, variable in targets:
            variable.assign(arrays[key])
