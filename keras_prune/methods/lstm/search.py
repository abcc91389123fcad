"""The search: REINFORCE over layer-wise prune/keep decisions, with parent baselines.

Each controller epoch feeds the best `parents` structures so far (the pre-trained network
alone in the first epoch) to the controller in turn. For each parent it samples `children`
decision sequences; every new child is pruned from the parent by the channel criterion,
recovered by distillation from its teacher, scored on the validation split, and saved.
The parent's reward is the baseline of its children's rewards in one policy-gradient step.

Children are cached by structure (their channel counts): a structure reached twice is
trained once. A child's model stays on disk only while the search can still need it, as a
parent (the best `parents` so far) or as the structure it returns: at the end of each epoch the
others are deleted (a 60 MB VGG-16 child, hundreds of them, would fill a disk), and their records
stay. After every evaluated child and every controller step, the whole search
state (controller and optimizer weights, every candidate, the pending decisions, the
sampler's random state) is written atomically to `<workdir>/checkpoint.npz`, so
`resume=True` continues an interrupted search where it stopped.
"""

import os
import time

import keras
import numpy as np

from keras_prune.criteria import channel_scores
from keras_prune.errors import PruneError, TrainingDivergedError
from keras_prune.export.report_io import read_state, save_keras, write_state
from keras_prune.graph import analyze, prune_channels
from keras_prune.methods.budget import top_channels
from keras_prune.methods.lstm.controller import PRUNE, PruningController, reinforce_step
from keras_prune.methods.lstm.structure import structure_key
from keras_prune.training import evaluate_accuracy
from keras_prune.training.distill import distill

__all__ = ["CHECKPOINT", "LSTMSearch"]

CHECKPOINT = "checkpoint.npz"



class LSTMSearch:
    """Runs and checkpoints the search; see the module docstring.

    Args:
        model: the pre-trained network (built in `strategy`'s scope).
        space: its `StructureSpace`.
        data: the `Dataset` (children train on `train`, are scored on `validation`).
        strategy: the tf.distribute strategy of recovery and evaluation.
        settings: `LSTMSettings`.
        workdir: folder for the checkpoint and the children's models.
        summaries: optional `RunSummaries` (per-epoch scalars under "lstm/").
        log: `fn(message)`.
    """

    def __init__(self, model, space, data, strategy, settings, *, workdir, summaries=None, log=print):
        if not data.info.num_validation:
            raise PruneError("lstm scores children on a validation split; the dataset has none.")
        self.model = model
        self.space = space
        self.data = data
        self.strategy = strategy
        self.settings = settings
        self.workdir = workdir
        self.summaries = summaries
        self.log = log
        # The controller is small and sees one parent's samples at a time: it trains on the
        # default device, apart from the strategy that distributes the children's recovery.
        self.controller = PruningController(settings.hidden_units, seed=settings.seed, name="pruning_controller")
        self.optimizer = keras.optimizers.Adam(settings.controller_learning_rate)
        descriptors = space.descriptors(space.original)
        self.controller((descriptors[None], np.zeros((1, len(descriptors)), "int32")))
        self.optimizer.build(self.controller.trainable_variables)
        self.rng = np.random.default_rng(settings.seed)
        self.reference_accuracy = None
        self.candidates = {}
        self.epoch = 0
        self.history = []
        self.pending = None
        self.stopped = None
        self.decisions = np.zeros(len(space.groups), "int64")
        self.samples = 0
        self.cache_hits = 0
        self.seconds = 0.0  # the search's own time, over every process of a resumed run
        self.seconds_before = 0.0  # the part of it spent by the processes before this one
        self._clock = None
        self._models = {}

    # ----------------------------------------------------------------- the loop
    def run(self, *, resume=False):
        """Searches until patience runs out, the FLOPs target is met (not with the "target" reward,
        which goes on looking for a more accurate structure at the target), or `max_epochs`;
        returns the best record (`best()`)."""
        path = os.path.join(self.workdir, CHECKPOINT)
        if resume and os.path.exists(path):
            self.restore(path)
            self.log(
                f"lstm: resuming after {self.epoch} controller epoch(s) with {len(self.candidates)} "
                f"evaluated structure(s) from {path}"
            )
        self._clock = time.perf_counter()
        if not self.candidates:
            self.reference_accuracy = evaluate_accuracy(self.model, self.data.validation, self.strategy)
            self._add(self.space.original, parent=None, accuracy=self.reference_accuracy, model_file=None, seconds=0.0)
        settings = self.settings
        while self.stopped is None:
            if self.epoch >= settings.max_epochs:
                self.stopped = f"reached --lstm_epochs={settings.max_epochs}"
                break
            if self.pending is None:
                self.pending = {"parents": self.parents(), "next": 0, "actions": None, "rewards": [], "entropy": []}
            while self.pending["next"] < len(self.pending["parents"]):
                self._feed(self.candidates[self.pending["parents"][self.pending["next"]]])
            self._end_epoch()
            self.checkpoint()
            self._discard_models()
        self._models.clear()
        self.log(f"lstm: search stopped: {self.stopped}")
        return self.best()

    def parents(self):
        """Keys of the best `settings.parents` structures by reward (ties: fewer FLOPs); a child whose
        recovery diverged is never one (its weights are not finite), nor one whose model was
        discarded (which only a resume under other reward settings could rank this high again)."""
        usable = [r for r in self.candidates.values() if not r.get("diverged") and not r.get("discarded")]
        ranked = sorted(usable, key=lambda r: (-r["reward"], r["flops_ratio"], r["id"]))
        return [r["key"] for r in ranked[: self.settings.parents]]

    def ranked(self, records=None):
        """Every structure evaluated (or `records`), the best first by `_rank` (ties: fewer FLOPs, then
        the earlier one); diverged children last."""
        records = self.candidates.values() if records is None else records
        return sorted(records,
                      key=lambda r: (not r.get("diverged"), self._rank(r), -r["flops_ratio"], -r["id"]), reverse=True)

    def best(self):
        """The structure the search returns: the first of `ranked` whose model is kept."""
        return next(r for r in self.ranked() if not r.get("discarded"))

    def _discard_models(self):
        """Deletes the models of the children no later epoch can need: not a parent of the next
        epoch and not the structure the search would return. Ranks only grow more crowded, so
        such a child never becomes either again (under the same reward settings). Runs after the
        epoch's checkpoint, and records the deletions in another: a kill in between leaves files
        the next pass deletes."""
        keep = set(self.parents()) | {self.best()["key"]}
        discarded = False
        for record in self.candidates.values():
            if record["key"] in keep or record["model_file"] is None or record.get("discarded"):
                continue
            path = os.path.join(self.workdir, record["model_file"])
            if os.path.exists(path):
                os.remove(path)
            record["discarded"] = discarded = True
        if discarded:
            self.checkpoint()

    def _rank(self, record):
        """(meets the budget, reward). With the "target" reward a structure meets it when it is at
        or under the FLOPs target and within the accuracy tolerance, and then beats any that does
        not (a child that cut past the target by losing accuracy is not a winner for that alone);
        the other rewards rank by reward alone (their search stops once the best by reward meets
        the target)."""
        settings = self.settings
        meets = (
            settings.reward_form == "target"
            and record["flops_ratio"] <= settings.target_flops
            and record["accuracy"] >= self.reference_accuracy - settings.tolerance - 1e-9
        )
        return (meets, record["reward"])

    def _feed(self, parent):
        """Samples the children of one parent, evaluates them, and takes one controller step."""
        pending = self.pending
        descriptors = self.space.descriptors(parent["counts"])
        if pending["actions"] is None:
            actions = self.controller.sample(descriptors, self.settings.children, self.rng)
            pending["actions"] = actions.tolist()
            self.decisions += (actions == PRUNE).sum(axis=0)
            self.samples += len(actions)
            # Counted when sampled (and checkpointed with the sample), not when evaluated:
            # after a resume, the children evaluated before the kill are found in the cache
            # again, and are not cache hits.
            keys = [structure_key(self.space.child(parent["counts"], a)) for a in actions]
            self.cache_hits += sum(key in self.candidates or key in keys[:i] for i, key in enumerate(keys))
            self.checkpoint()
        actions = np.asarray(pending["actions"], "int32")
        rewards = [self.evaluate(parent, self.space.child(parent["counts"], a))["reward"] for a in actions]
        advantages = np.asarray(rewards) - parent["reward"]
        stats = reinforce_step(
            self.controller, self.optimizer, np.repeat(descriptors[None], len(actions), axis=0), actions, advantages
        )
        pending["rewards"].extend(rewards)
        pending["entropy"].append(stats["entropy"])
        pending["next"] += 1
        pending["actions"] = None
        self.checkpoint()

    def _tick(self):
        """Adds the time since the last tick to `seconds` (kept in every checkpoint, so a kill
        loses only the work it interrupts, which the resumed run does again)."""
        if self._clock is not None:
            now = time.perf_counter()
            self.seconds += now - self._clock
            self._clock = now

    def _end_epoch(self):
        self._tick()
        best = self.best()
        stale = self._epochs_without_improvement(best, self.history[-1] if self.history else None)
        rewards = self.pending["rewards"]
        record = {
            "epoch": self.epoch + 1,
            "parents": len(self.pending["parents"]),
            "children": len(rewards),
            "mean_reward": float(np.mean(rewards)) if rewards else None,
            "max_reward": float(np.max(rewards)) if rewards else None,
            "policy_entropy": float(np.mean(self.pending["entropy"])) if self.pending["entropy"] else None,
            "best_reward": best["reward"],
            "best_flops_ratio": best["flops_ratio"],
            "best_accuracy": best["accuracy"],
            "children_evaluated": len(self.candidates) - 1,  # as the report's structures_evaluated: not the root
            "epochs_without_improvement": stale,
            "seconds": round(self.seconds, 3),
        }
        self.history.append(record)
        self.epoch += 1
        self.pending = None
        self.log(
            f"lstm: epoch {record['epoch']}: mean reward {record['mean_reward']:.4f}, entropy "
            f"{record['policy_entropy']:.3f}; best reward {best['reward']:.4f} at {best['flops_ratio']:.4f} "
            f"of the FLOPs, validation accuracy {best['accuracy']:.4f} ({record['children_evaluated']} children evaluated)"
        )
        if self.summaries is not None:
            values = {k: v for k, v in record.items() if k not in ("epoch", "seconds")}
            self.summaries.scalars(record["epoch"], **{f"lstm/{k}": v for k, v in values.items()})
        if best["flops_ratio"] <= self.settings.target_flops and self.settings.reward_form != "target":
            self.stopped = (
                f"the best structure has {best['flops_ratio']:.4f} of the FLOPs "
                f"(--target_flops={self.settings.target_flops:g})"
            )
        elif stale >= self.settings.patience:
            self.stopped = f"no better structure for {stale} epoch(s) (--patience={self.settings.patience})"

    def _epochs_without_improvement(self, best, last):
        """`last` epoch's count plus one, or 0 if `best` beats `last` epoch's best.

        The best only ever moves up in `_rank` (the pool grows), so comparing with the last
        epoch's is enough; an equal reward at fewer FLOPs is not an improvement. The first
        epoch is compared with the pre-trained network (the search's epoch 0).
        """
        if last is None:
            roots = [r for r in self.candidates.values() if r.get("epoch") == 0]
            if not roots:
                return 0
            root = self.ranked(roots)[0]
            last = {"best_flops_ratio": root["flops_ratio"], "best_reward": root["reward"],
                    "best_accuracy": root["accuracy"], "epochs_without_improvement": 0}
        meeting, reward_ = self._rank(best)
        was_meeting, was = self._rank({"flops_ratio": last["best_flops_ratio"], "reward": last["best_reward"],
                                       "accuracy": last["best_accuracy"]})
        improved = meeting > was_meeting or (meeting == was_meeting and reward_ > was + 1e-12)
        return 0 if improved else last["epochs_without_improvement"] + 1

    def _rerank_history(self):
        """Each epoch's best and its count of epochs without improvement, again under these settings,
        from the structures evaluated by the end of that epoch (after `restore` recomputed the rewards)."""
        last = None
        for entry in self.history:
            best = self.ranked([r for r in self.candidates.values() if r["epoch"] <= entry["epoch"]])[0]
            entry.update(best_reward=best["reward"], best_flops_ratio=best["flops_ratio"],
                         best_accuracy=best["accuracy"])
            entry["epochs_without_improvement"] = self._epochs_without_improvement(best, last)
            last = entry

    # --------------------------------------------------------------- candidates
    def evaluate(self, parent, counts):
        """The record of structure `counts`, pruned from `parent` and recovered unless cached."""
        key = structure_key(counts)
        if key in self.candidates:
            return self.candidates[key]
        start = time.perf_counter()
        settings = self.settings
        parent_model = self.load(parent)
        graph = analyze(parent_model)
        keep = {}
        for group, count in zip(self._groups_of(graph, parent), counts):
            if count < group.size:
                keep[group.id] = top_channels(channel_scores(graph, group, settings.criterion), count)
        with self.strategy.scope():
            child = prune_channels(parent_model, keep, graph=graph)
        teacher = parent_model if settings.teacher == "parent" else self.model
        try:
            distill(
                child,
                teacher,
                self.data.train,
                self.strategy,
                epochs=settings.recovery_epochs,
                learning_rate=settings.learning_rate,
                temperature=settings.temperature,
                alpha=settings.distill_weight,
            )
        except TrainingDivergedError:
            # One child whose recovery diverged should not end the search (a resumed run would
            # meet it again): it scores zero accuracy, so its reward is the worst, and it is
            # never a parent nor the result.
            self.log(f"lstm:   warning: the recovery of a child of {parent['id']} diverged (loss NaN/inf); it "
                     "scores zero accuracy (a smaller --learning_rate, in a new run, avoids it)")
            record = self._add(counts, parent=parent["key"], accuracy=0.0, model_file=None,
                               seconds=time.perf_counter() - start)
            record["diverged"] = True
            self.checkpoint()
            return record
        accuracy = evaluate_accuracy(child, self.data.validation, self.strategy)
        model_file = os.path.join("children", f"s{len(self.candidates):04d}.keras")
        path = os.path.join(self.workdir, model_file)
        save_keras(child, path)
        record = self._add(counts, parent=parent["key"], accuracy=accuracy, model_file=model_file,
                           seconds=time.perf_counter() - start)
        self.log(
            f"lstm:   child {record['id']} of {parent['id']}: {record['flops_ratio']:.4f} of the FLOPs, "
            f"validation accuracy {accuracy:.4f}, reward {record['reward']:.4f} ({record['seconds']:.1f} s)"
        )
        if self.summaries is not None:
            self.summaries.scalars(record["id"], **{"lstm/child_reward": record["reward"],
                                                    "lstm/child_flops_ratio": record["flops_ratio"],
                                                    "lstm/child_accuracy": accuracy})
        self.checkpoint()
        return record

    def _add(self, counts, *, parent, accuracy, model_file, seconds):
        flops_ratio = self.space.flops_ratio(counts)
        record = {
            "id": len(self.candidates),
            "key": structure_key(counts),
            "counts": [int(c) for c in counts],
            "parent": parent,
            "epoch": self.epoch + 1 if parent is not None else 0,
            "flops_ratio": float(flops_ratio),
            "accuracy": float(accuracy),
            "reward": float(self.settings.reward(accuracy, flops_ratio, self.reference_accuracy)),
            "model_file": model_file,
            "seconds": round(float(seconds), 3),
        }
        self.candidates[record["key"]] = record
        return record

    def load(self, record):
        """The model of an evaluated structure (the pre-trained network for the root)."""
        if record["model_file"] is None:
            return self.model
        if record["key"] not in self._models:
            self._models.clear()  # one parent at a time: children are pruned from it in turn
            with self.strategy.scope():
                self._models[record["key"]] = keras.models.load_model(
                    os.path.join(self.workdir, record["model_file"]), compile=False
                )
        return self._models[record["key"]]

    def _groups_of(self, graph, record):
        """The searched groups of a candidate's graph, in the space's order (surgery keeps layer names)."""
        groups = []
        for group_id, count in zip(self.space.ids, record["counts"]):
            group = graph.group(group_id)
            if group.size != count:
                raise RuntimeError(f"Group {group_id} of structure {record['key']} has {group.size} channels, not {count}.")
            groups.append(group)
        return groups

    # ------------------------------------------------------------- persistence
    def state(self):
        return {
            "epoch": self.epoch,
            "reference_accuracy": self.reference_accuracy,
            "candidates": list(self.candidates.values()),
            "history": self.history,
            "pending": self.pending,
            "stopped": self.stopped,
            "decisions": self.decisions.tolist(),
            "samples": self.samples,
            "cache_hits": self.cache_hits,
            "seconds": self.seconds,
            "rng": self.rng.bit_generator.state,
        }

    def checkpoint(self):
        """Writes the whole search state atomically (one file)."""
        self._tick()
        arrays = {f"controller_{i}": np.asarray(v) for i, v in enumerate(self.controller.get_weights())}
        arrays.update({f"optimizer_{i}": np.asarray(v.numpy()) for i, v in enumerate(self.optimizer.variables)})
        write_state(os.path.join(self.workdir, CHECKPOINT), self.state(), arrays)

    def restore(self, path):
        state, arrays = read_state(path)
        weights = [arrays[f"controller_{i}"] for i in range(len(self.controller.get_weights()))]
        self.controller.set_weights(weights)
        for i, variable in enumerate(self.optimizer.variables):
            variable.assign(arrays[f"optimizer_{i}"])
        self.epoch = state["epoch"]
        self.reference_accuracy = state["reference_accuracy"]
        self.candidates = {r["key"]: r for r in state["candidates"]}
        # Rewards follow from each child's accuracy and FLOPs; recomputing them keeps the pool
        # consistent if the run resumes with other reward settings.
        for record in self.candidates.values():
            record["reward"] = float(
                self.settings.reward(record["accuracy"], record["flops_ratio"], self.reference_accuracy)
            )
        self.history = state["history"]
        self._rerank_history()
        self.pending = state["pending"]
        self.stopped = state["stopped"]
        self.decisions = np.asarray(state["decisions"], "int64")
        self.samples = state["samples"]
        self.cache_hits = state["cache_hits"]
        self.seconds = self.seconds_before = state["seconds"]
        self.rng.bit_generator.state = state["rng"]
