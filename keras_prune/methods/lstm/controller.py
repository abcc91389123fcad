"""The LSTM controller: reads a network's layer descriptors in order and decides, per layer,
whether to prune it; trained by REINFORCE.

The policy is autoregressive: the input at step l is the descriptor of layer l and the
decision taken at step l - 1, so `pi(a_l | a_<l, descriptors)`. The controller sees
descriptors and rewards only, never layers.
"""

import keras
import numpy as np
import tensorflow as tf

__all__ = ["KEEP", "PRUNE", "PruningController", "reinforce_step"]

KEEP, PRUNE = 0, 1
"""The two decisions per layer."""


@keras.saving.register_keras_serializable(package="keras_prune")
class PruningController(keras.Model):
    """Descriptor embedding -> LSTM -> a 2-way (keep, prune) softmax per layer.

    Call it with `(descriptors [B, L, D], actions [B, L] int)` for the logits `[B, L, 2]`
    of the policy with the decisions teacher-forced (what REINFORCE differentiates);
    `sample` draws decisions one layer at a time with the same weights.

    Args:
        hidden_units: width of the embedding and of the LSTM state.
        seed: seeds the initial weights (None: Keras's global generator), so a search
            starts from the same policy whenever it is run with the same seed.
    """

    def __init__(self, hidden_units=64, *, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = int(hidden_units)
        self.seed = seed
        seeds = [None] * 4 if seed is None else [int(seed) + i for i in range(4)]
        glorot = [keras.initializers.GlorotUniform(seed=s) for s in seeds]
        self.embed = keras.layers.Dense(self.hidden_units, activation="tanh", kernel_initializer=glorot[0], name="embed")
        cell = keras.layers.LSTMCell(
            self.hidden_units,
            kernel_initializer=glorot[1],
            recurrent_initializer=keras.initializers.Orthogonal(seed=seeds[2]),
        )
        self.rnn = keras.layers.RNN(cell, return_sequences=True, name="lstm")
        self.policy = keras.layers.Dense(2, kernel_initializer=glorot[3], name="policy")

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units, "seed": self.seed}

    @staticmethod
    def _previous(actions):
        """One-hot of the decision before each step (zeros before the first)."""
        one_hot = keras.ops.one_hot(keras.ops.cast(actions, "int32"), 2)
        return keras.ops.pad(one_hot[:, :-1], [[0, 0], [1, 0], [0, 0]])

    def call(self, inputs):
        descriptors, actions = inputs
        descriptors = keras.ops.cast(descriptors, "float32")
        steps = keras.ops.concatenate([descriptors, self._previous(actions)], axis=-1)
        return self.policy(self.rnn(self.embed(steps)))

    def sample(self, descriptors, count, rng):
        """Draws `count` decision sequences for one network.

        Args:
            descriptors: `[L, D]` array, one row per prunable group in model order.
            count: sequences to draw.
            rng: a `numpy.random.Generator` (the search's, so `--resume` replays it).

        Returns:
            `[count, L]` int array of `KEEP` / `PRUNE`.
        """
        return self.rollout(descriptors, count, lambda step, p_prune: (rng.random(count) < p_prune))[0]

    def rollout(self, descriptors, count, choose):
        """Steps the LSTM cell layer by layer, letting `choose` take each decision.

        Args:
            descriptors: `[L, D]`.
            count: sequences rolled out together.
            choose: `fn(step, p_prune [count]) -> [count] bool` (True: prune).

        Returns:
            `(actions [count, L] int, p_prune [count, L])`: the decisions and the policy's
            probability of "prune" at each step.
        """
        descriptors = np.asarray(descriptors, "float32")
        if not self.built:
            self((descriptors[None], np.zeros((1, len(descriptors)), "int32")))
        cell = self.rnn.cell
        states = [keras.ops.zeros((count, self.hidden_units)), keras.ops.zeros((count, self.hidden_units))]
        previous = np.zeros((count, 2), "float32")
        actions = np.zeros((count, len(descriptors)), "int32")
        p_prune = np.zeros((count, len(descriptors)))
        for step, row in enumerate(descriptors):
            x = np.concatenate([np.repeat(row[None], count, axis=0), previous], axis=-1)
            output, states = cell(self.embed(x), states)
            probs = keras.ops.convert_to_numpy(keras.ops.softmax(self.policy(output))).astype("float64")
            p_prune[:, step] = probs[:, PRUNE] / probs.sum(axis=-1)
            actions[:, step] = np.asarray(choose(step, p_prune[:, step]), bool).astype("int32")
            previous = np.eye(2, dtype="float32")[actions[:, step]]
        return actions, p_prune

    def log_probs_and_entropy(self, descriptors, actions):
        """Per sequence: the summed log-probability of `actions`, and the mean per-step entropy.

        Args:
            descriptors: `[B, L, D]`.
            actions: `[B, L]`.
        """
        log_p = keras.ops.log_softmax(self((descriptors, actions)), axis=-1)
        taken = keras.ops.one_hot(keras.ops.cast(actions, "int32"), 2)
        log_prob = keras.ops.sum(keras.ops.sum(log_p * taken, axis=-1), axis=-1)
        entropy = keras.ops.mean(-keras.ops.sum(keras.ops.exp(log_p) * log_p, axis=-1), axis=-1)
        return log_prob, entropy

    def prune_probabilities(self, descriptors, actions):
        """`[B, L]`: the probability of "prune" at each step, given the decisions before it."""
        return keras.ops.softmax(self((descriptors, actions)), axis=-1)[..., PRUNE]


def reinforce_step(controller, optimizer, descriptors, actions, advantages):
    """One policy-gradient step: maximise `mean_k advantage_k * log pi(actions_k)`.

    Args:
        controller: a `PruningController`.
        optimizer: its Keras optimizer.
        descriptors: `[B, L, D]` (one parent's descriptors, repeated per sequence).
        actions: `[B, L]` sampled decisions.
        advantages: `[B]`, reward minus the parent's reward (the baseline).

    Returns:
        `{"loss", "entropy"}` as floats (entropy of the policy before the step).
    """
    descriptors = tf.convert_to_tensor(np.asarray(descriptors, "float32"))
    actions = tf.convert_to_tensor(np.asarray(actions, "int32"))
    advantages = tf.convert_to_tensor(np.asarray(advantages, "float32"))
    with tf.GradientTape() as tape:
        log_prob, entropy = controller.log_probs_and_entropy(descriptors, actions)
        loss = -keras.ops.mean(advantages * log_prob)
    variables = controller.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return {"loss": float(loss), "entropy": float(keras.ops.mean(entropy))}
