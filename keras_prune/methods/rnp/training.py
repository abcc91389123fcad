"""RNP's alternating training (docs/PAPERS.md 3.2, Algorithm 1) under a tf.distribute strategy.

Phase (a) trains the decision network by deep Q-learning with the backbone frozen:
epsilon-greedy rollouts of the masked backbone give per-step states, actions and
rewards; the Q-loss is computed from the stored states only, so it can never reach the
backbone. Phase (b) fine-tunes the backbone with cross-entropy under the decision
network's greedy actions, taken in inference mode as the served model takes them, with the
decision network frozen. Every step runs each
replica on its contiguous share of the global batch; losses are divided by the global
batch size and `apply_gradients` sums the replicas' gradients.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_prune.agents.dqn import DecisionNet, ReplayBuffer, epsilon_at, step_rewards, td_targets
from keras_prune.errors import TrainingDivergedError
from keras_prune.export.report_io import read_state, write_state

__all__ = ["RNPTrainer", "rollout"]


def rollout(backbone, decision, x, *, epsilon, flops_bias, training=False, actions=None):
    """Runs the masked backbone, choosing each step's action from the decision network.

    Actions are 0-based (action i computes i + 1 groups): greedy on the Q-values minus
    `flops_bias` per extra group, random with probability `epsilon`; or, if `actions`
    (batch, steps) is given, those (the decision network is not run).

    Returns:
        (logits, states: list of (batch, C_t) pooled features, actions (batch, steps) int32).
    """
    h = backbone.run_stem(x, training=training)
    batch = ops.shape(x)[0]
    given = actions
    hidden = decision.initial_state(batch) if given is None else None
    states, actions = [], []
    extra_groups = ops.arange(decision.actions, dtype="float32")
    for t in range(backbone.steps):
        state = ops.stop_gradient(ops.mean(h, axis=(1, 2)))
        if given is None:
            q, hidden = decision.step(t, state, hidden)
            greedy = ops.cast(ops.argmax(q - flops_bias * extra_groups, axis=-1), "int32")
            random = tf.random.uniform((batch,), 0, decision.actions, dtype="int32")
            action = ops.where(tf.random.uniform((batch,)) < epsilon, random, greedy)
        else:
            action = ops.cast(given[:, t], "int32")
        h = backbone.run_stage(t, h, action + 1, training=training)
        states.append(state)
        actions.append(action)
    return backbone.run_head(h, training=training), states, ops.stack(actions, axis=1)


def _shard(*tensors):
    """This replica's contiguous share of each global-batch tensor."""
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync
    shards = []
    for tensor in tensors:
        size = (tf.shape(tensor)[0] + replicas - 1) // replicas
        start = tf.cast(context.replica_id_in_sync_group, tf.int32) * size
        shards.append(tensor[start : start + size])
    return shards


def _per_sample_ce(y, logits):
    return keras.losses.sparse_categorical_crossentropy(ops.reshape(y, (-1,)), logits, from_logits=True)


class RNPTrainer:
    """Owns the decision network, its optional target copy, both optimizers and the replay.

    Args:
        backbone: a `RuntimeBackbone` built inside `strategy.scope()`.
        strategy: the run's tf.distribute strategy.
        settings: an `RNPSettings`.
    """

    def __init__(self, backbone, strategy, settings, *, seed=0):
        self.backbone = backbone
        self.strategy = strategy
        self.settings = settings
        s = settings
        with strategy.scope():
            self.decision = DecisionNet(backbone.state_sizes, backbone.groups, embed=s.embed, hidden=s.hidden)
            self.decision.build()
            self.target = None
            if s.target_update > 0:
                self.target = DecisionNet(backbone.state_sizes, backbone.groups, embed=s.embed, hidden=s.hidden)
                self.target.build()
                self.target.set_weights(self.decision.get_weights())
            self.q_optimizer = keras.optimizers.RMSprop(s.q_learning_rate)
            self.q_optimizer.build(self.decision.trainable_variables)
            self.backbone_optimizer = keras.optimizers.RMSprop(s.backbone_learning_rate)
            self.backbone_optimizer.build(backbone.trainable_variables)
        self.replay = ReplayBuffer(s.replay, backbone.state_sizes, backbone.steps, seed=seed) if s.replay else None
        self.alpha = s.alpha
        self.q_steps = 0
        self.history = []
        self.seconds = 0.0  # of training so far, the interrupted processes' included (kept by `save`)
        self._rollout = tf.function(self._distributed_rollout)
        self._q_update = tf.function(self._distributed_q_update)
        self._backbone_update = tf.function(self._distributed_backbone_update)

    # ----- distributed steps ------------------------------------------------------------

    def _distributed_rollout(self, x, y, epsilon, flops_bias):
        def replica(x, y):
            x, y = _shard(x, y)
            logits, states, actions = rollout(self.backbone, self.decision, x, epsilon=epsilon, flops_bias=flops_bias)
            correct = ops.cast(ops.cast(ops.argmax(logits, axis=-1), "int32") == ops.cast(ops.reshape(y, (-1,)), "int32"), "float32")
            return states, actions, _per_sample_ce(y, logits), correct

        results = self.strategy.run(replica, args=(x, y))
        return tf.nest.map_structure(lambda v: self.strategy.gather(v, axis=0), results)

    def _distributed_q_update(self, states, actions, rewards):
        gamma = self.settings.gamma

        def replica(states, actions, rewards):
            global_batch = tf.cast(tf.shape(actions)[0], "float32")
            *states, actions, rewards = _shard(*states, actions, rewards)
            bootstrap = self.target(states) if self.target is not None else self.decision(states)
            targets = ops.stop_gradient(td_targets(rewards, bootstrap, gamma=gamma))
            with tf.GradientTape() as tape:
                q = self.decision(states)
                taken = ops.take_along_axis(q, ops.expand_dims(actions, -1), axis=-1)[..., 0]
                per_sample = ops.mean(ops.square(targets - taken), axis=-1)
                loss = ops.sum(per_sample) / global_batch
            variables = self.decision.trainable_variables
            self.q_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return per_sample

        per_sample = self.strategy.run(replica, args=(states, actions, rewards))
        loss = ops.mean(self.strategy.gather(per_sample, axis=0))
        if self.target is not None:
            tau = self.settings.target_update
            for target, online in zip(self.target.weights, self.decision.weights):
                target.assign(tau * online + (1.0 - tau) * target)
        return loss

    def _distributed_backbone_update(self, x, y, epsilon):
        def replica(x, y):
            global_batch = tf.cast(tf.shape(x)[0], "float32")
            x, y = _shard(x, y)
            # The decisions a served model would take: from inference-mode features (BatchNorm's
            # moving statistics, no dropout). Training mode's batch statistics would make others.
            bias = self.settings.flops_bias  # the served model's default operating point
            _, _, actions = rollout(self.backbone, self.decision, x, epsilon=epsilon, flops_bias=bias)
            with tf.GradientTape() as tape:
                logits, _, actions = rollout(self.backbone, self.decision, x, epsilon=epsilon, flops_bias=bias,
                                             training=True, actions=actions)
                per_sample = _per_sample_ce(y, logits)
                loss = ops.sum(per_sample) / global_batch
            variables = self.backbone.trainable_variables
            self.backbone_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return per_sample, actions

        per_sample, actions = self.strategy.run(replica, args=(x, y))
        return ops.mean(self.strategy.gather(per_sample, axis=0)), self.strategy.gather(actions, axis=0)

    # ----- host-side steps ----------------------------------------------------------------

    def backbone_step(self, x, y, *, random_actions=False):
        """One fine-tuning step under greedy decisions (or uniformly random group counts)."""
        loss, actions = self._backbone_update(x, y, tf.constant(1.0 if random_actions else 0.0))
        return _finite(float(loss), "backbone", "--rnp_backbone_learning_rate"), np.asarray(actions)

    def calibrate_alpha(self, batches):
        """alpha = 1 / mean cross-entropy of the pruned forward pass under random actions."""
        losses = [np.asarray(self.rollout(x, y, epsilon=1.0)["loss"]) for x, y in batches]
        return 1.0 / max(float(np.mean(np.concatenate(losses))), 1e-6)

    def rollout(self, x, y, *, epsilon, flops_bias=0.0):
        states, actions, loss, correct = self._rollout(x, y, tf.constant(float(epsilon)), tf.constant(float(flops_bias)))
        return {"states": [np.asarray(s) for s in states], "actions": np.asarray(actions),
                "loss": np.asarray(loss), "correct": np.asarray(correct)}

    def decision_step(self, x, y):
        """One Q-learning step: epsilon-greedy rollout, rewards, replay, TD update."""
        epsilon = epsilon_at(self.q_steps, self.settings.epsilon_decay_steps)
        episode = self.rollout(x, y, epsilon=epsilon)
        rewards = step_rewards(episode["actions"], episode["loss"], penalty=self.settings.penalty, alpha=self.alpha)
        episode_reward = float(rewards.sum(axis=1).mean())  # this policy's, not the replayed episodes'
        states, actions = episode["states"], episode["actions"]
        if self.replay is not None:
            self.replay.add(states, actions, rewards)
            states, actions, rewards = self.replay.sample(len(actions))
        loss = _finite(
            float(self._q_update([tf.constant(s) for s in states], tf.constant(actions), tf.constant(rewards))),
            "decision network",
            "--rnp_q_learning_rate",
        )
        self.q_steps += 1
        return {"q_loss": loss, "epsilon": epsilon, "reward": episode_reward,
                "groups": float(episode["actions"].mean() + 1)}

    def new_round(self):
        """Forgets the replayed episodes once the backbone has been fine-tuned: their states and
        rewards came from the network before, and would mix two environments in one Q-function."""
        if self.replay is not None and self.settings.backbone_steps:
            self.replay.clear()

    # ----- checkpoints --------------------------------------------------------------------

    def save(self, path, rounds_done):
        arrays = {}
        for prefix, variables in self._variable_sets():
            arrays.update({f"{prefix}/{i}": np.asarray(v.numpy()) for i, v in enumerate(variables)})
        if self.replay is not None:
            arrays.update({f"replay/{k}": v for k, v in self.replay.get_state().items()})
        meta = {"rounds_done": rounds_done, "q_steps": self.q_steps, "alpha": self.alpha, "history": self.history,
                "replay_rng": self.replay.rng.bit_generator.state if self.replay is not None else None,
                "seconds": self.seconds}
        write_state(path, meta, arrays)

    def restore(self, path):
        """Loads a checkpoint written by `save`; returns the number of rounds done."""
        meta, arrays = read_state(path)
        for prefix, variables in self._variable_sets():
            for i, variable in enumerate(variables):
                variable.assign(arrays[f"{prefix}/{i}"])
        if self.replay is not None:
            self.replay.set_state({k[len("replay/"):]: v for k, v in arrays.items() if k.startswith("replay/")})
            if meta["replay_rng"] is not None:
                self.replay.rng.bit_generator.state = meta["replay_rng"]
        self.q_steps, self.alpha, self.history = meta["q_steps"], meta["alpha"], meta["history"]
        self.seconds = float(meta.get("seconds", 0.0))  # (a checkpoint from before it was kept: 0)
        return meta["rounds_done"]

    def _variable_sets(self):
        sets = [("backbone", self.backbone.model.weights), ("decision", self.decision.weights),
                ("q_optimizer", self.q_optimizer.variables), ("backbone_optimizer", self.backbone_optimizer.variables)]
        if self.target is not None:
            sets.append(("target", self.target.weights))
        return sets


def _finite(loss, phase, flag):
    """`loss`, or a clear error when the training of `phase` diverged."""
    if not np.isfinite(loss):
        raise TrainingDivergedError(
            f"rnp: the {phase} loss became {loss} (training diverged); try a smaller {flag}. "
            "The last completed round's checkpoint is kept: --resume continues from it."
        )
    return loss
