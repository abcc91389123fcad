"""OLMP's outer loop ("iterative pruning and adjusting", then retraining), checkpointed.

At every iteration `it` (paper 2.4):
1. while `it < prune_stop`, each layer is triggered with DNS's probability;
2. the triggered layers update their masks with their current c-rates;
3. every `prune_interval` iterations, if at least two layers are triggered, NCS searches
   their c-rates on the current batch (fitness: the fraction of weights and biases kept
   over all pruned layers; constraint: batch accuracy >= the current model's - delta,
   else the death penalty 1.1), and the best c-rates are written back and applied. With
   `constraint="validation"` the accuracies are measured on the next `constraint_examples`
   held-out examples instead of the training batch;
4. one masked SGD step ("adjusting"; after `prune_stop`, retraining with frozen masks).

Checkpoints (`<workdir>/checkpoint.npz`, written atomically) hold the weights, masks,
optimizer state, c-rates, frozen statistics, trigger RNG, iteration and the NCS history.
One is written just before every NCS call, with the batch it evaluates on (and, with the
held-out constraint, the training batch of that iteration's step), so a resumed
run continues that very search (Keras Tuner keeps its finished trials; with
`--noolmp_tuner` the bare search keeps its finished generations); then one after the
call's SGD step, every `checkpoint_every` iterations and at the end. After a crash a
resumed run therefore loses at most the trial in flight inside a search (the generation
in flight with `--noolmp_tuner`), and at most
`checkpoint_every` iterations of training outside one. The data order restarts on resume
(tf.data iterators are not checkpointed).
"""

import os
import time

import numpy as np

from keras_prune.errors import PruneError
from keras_prune.export.report_io import read_state, write_state
from keras_prune.methods.olmp.dns import LayerStatistics
from keras_prune.methods.olmp.search import search_crates
from keras_prune.methods.olmp.settings import DEATH_PENALTY, OLMPSettings

__all__ = ["CHECKPOINT", "OLMPLoop"]

CHECKPOINT = "checkpoint.npz"
"""The loop's checkpoint file inside its work folder."""


class OLMPLoop:
    """Runs OLMP on a masked model with a `MaskedSGD` trainer.

    Args:
        trainer: the `MaskedSGD` of the model.
        dns: the model's `DNSLayers` (statistics frozen at construction).
        train: the training `tf.data.Dataset` (batched; repeated here).
        validation: the validation `tf.data.Dataset`, needed with `settings.constraint ==
            "validation"` (its examples are then what NCS measures accuracy on).
        settings: the `OLMPSettings`.
        workdir: folder for the checkpoint and the NCS searches (`tuner/`).
        tuner_dir: folder of the NCS searches' Keras Tuner projects instead of
            `<workdir>/tuner` (Keras Tuner workers share the chief's).
        summaries: a `RunSummaries` for TensorBoard, or None.
        log: `fn(message)` for progress lines.
        log_every: iterations between progress lines and TensorBoard training scalars.
        checkpoint_every: iterations between checkpoints outside NCS calls (default:
            `settings.prune_interval`).
    """

    def __init__(self, trainer, dns, train, settings, *, validation=None, workdir, tuner_dir=None, summaries=None,
                 log=print, log_every=500, checkpoint_every=None):
        self.trainer, self.dns, self.train, self.settings = trainer, dns, train, settings
        if settings.constraint == "validation" and validation is None:
            raise PruneError(
                "olmp_constraint='validation' measures NCS candidates on held-out examples, but this run has "
                "no validation split; use a dataset with one, or --olmp_constraint=batch."
            )
        self.validation = validation
        self.workdir = os.fspath(workdir)
        self._tuner_dir = os.fspath(tuner_dir) if tuner_dir else None
        self.summaries, self.log = summaries, log
        self.log_every = max(1, int(log_every))
        self.checkpoint_every = max(1, int(checkpoint_every or settings.prune_interval))
        self.crates = np.full(len(dns.layers), settings.initial_crate, "float64")
        self.rng = np.random.default_rng(settings.seed)
        self.iteration = 0
        self.calls = []  # one record per NCS call
        self.progress = []  # one record per progress line
        self.pending = None  # the NCS call in progress: iteration, layers, reference accuracy
        self.batch = None  # the global batch the pending call evaluates on
        self.step_batch = None  # the training batch of its iteration's SGD step (held-out constraint: another)
        self.search_seconds = 0.0
        self.train_seconds = 0.0  # over every process of a resumed run, ticked into each checkpoint
        self._clock = None  # (time, search_seconds) at the last tick of this process

    @property
    def checkpoint_path(self):
        return os.path.join(self.workdir, CHECKPOINT)

    @property
    def tuner_dir(self):
        return self._tuner_dir or os.path.join(self.workdir, "tuner")

    # ----------------------------------------------------------------- the loop

    def run(self, *, resume=False):
        """Runs (or, with `resume` and a checkpoint, continues) the loop to the last iteration."""
        if resume and os.path.exists(self.checkpoint_path):
            self.restore()
            self.log(f"olmp: resuming at iteration {self.iteration} from {self.checkpoint_path}")
        settings = self.settings
        self._clock = (time.perf_counter(), self.search_seconds)
        if self.pending is not None:
            x, y = self.trainer.distribute(*self.step_batch)
            self._finish_search(resume=True)
            self._adjust(x, y, np.zeros(len(self.crates), bool), checkpoint=True)
        iterator = self.trainer.iterator(self.train) if self.iteration < settings.iterations else None
        held_out = self._held_out_batches() if settings.constraint == "validation" else None
        while self.iteration < settings.iterations:
            it = self.iteration
            x, y = next(iterator)
            triggered = self._sample_triggers(it)
            searching = it < settings.prune_stop and it % settings.prune_interval == 0 and triggered.sum() >= 2
            if searching:
                self.trainer.update_masks(self.dns.thresholds(self.crates), triggered)
                step_batch = self.trainer.gather(x, y)
                self._begin_search(it, triggered, next(held_out) if held_out is not None else step_batch, step_batch)
                self._finish_search(resume=False)
                triggered = np.zeros_like(triggered)  # the winner is applied already
            self._adjust(x, y, triggered, checkpoint=searching or (it + 1) % self.checkpoint_every == 0)
        self.save()
        return self

    def _held_out_batches(self):
        """Endless NumPy global batches of `constraint_examples` validation examples, in turn.

        The validation split is read in order and wraps around, so consecutive NCS calls see
        different examples when it holds more than one batch; a split smaller than
        `constraint_examples` gives batches of the whole split. The stream starts after the
        batches of the calls already made, so a resumed run measures what an uninterrupted
        one would. Sizes are whole multiples of the replicas, so every replica gets an equal share.

        Raises:
            PruneError: at once (not at the first call) if the validation split is empty.
        """
        examples = self.validation.unbatch()
        wanted = self.settings.constraint_examples
        size = next((len(y) for _, y in examples.take(wanted).batch(wanted).as_numpy_iterator()), 0)
        if size == 0:
            raise PruneError(
                "olmp_constraint='validation' measures NCS candidates on held-out examples, but the validation "
                "split is empty; use a dataset with one, or --olmp_constraint=batch."
            )
        replicas = self.trainer.strategy.num_replicas_in_sync
        size = max(size - size % replicas, replicas)
        stream = examples.repeat().skip(len(self.calls) * size).batch(size)
        return iter(stream.as_numpy_iterator())

    def _sample_triggers(self, iteration):
        """Which layers update their masks at `iteration` (none once masks are frozen)."""
        if iteration >= self.settings.prune_stop:
            return np.zeros(len(self.crates), bool)
        return self.rng.random(len(self.crates)) < self.dns.trigger_probabilities(iteration)

    def _adjust(self, x, y, triggered, *, checkpoint):
        """Mask update of `triggered` layers and one SGD step; then logs and checkpoints."""
        loss, correct, count = self.trainer.step(x, y, self.dns.thresholds(self.crates), triggered)
        self.iteration += 1
        last = self.iteration == self.settings.iterations
        if self.iteration % self.log_every == 0 or last:
            self._report_progress(loss, correct, count)
        if checkpoint and not last:
            self.save()

    # ----------------------------------------------------------------- NCS calls

    def _begin_search(self, iteration, triggered, batch, step_batch):
        layers = [int(i) for i in np.flatnonzero(triggered)]
        x, y = self.trainer.distribute(*batch)
        reference, _ = self.trainer.evaluate(x, y, self.dns.thresholds(self.crates), np.zeros_like(triggered))
        self.pending = {"iteration": iteration, "layers": layers, "reference_accuracy": reference}
        self.batch, self.step_batch = batch, step_batch
        self.save()

    def _finish_search(self, *, resume):
        """Runs (or continues) the pending NCS call, writes back and applies its best c-rates."""
        started = time.perf_counter()
        pending = self.pending
        layers, reference = pending["layers"], pending["reference_accuracy"]
        searched = np.zeros(len(self.crates), bool)
        searched[layers] = True
        before = self.crates.copy()
        outcome = search_crates(
            self.fitness_function(layers, reference, self.batch),
            names=[self.dns.names[i] for i in layers],
            initial=before[layers],
            settings=self.settings,
            iteration=pending["iteration"],
            directory=self.tuner_dir,
            resume=resume,
        )
        self.crates[layers] = outcome.crates
        self.trainer.update_masks(self.dns.thresholds(self.crates), searched)
        seconds = time.perf_counter() - started
        self.search_seconds += seconds
        record = {
            "iteration": pending["iteration"],
            "layers": [self.dns.names[i] for i in layers],
            "reference_accuracy": round(reference, 6),
            "sigma": self.settings.sigma_at(pending["iteration"]),
            "crates_before": [round(float(c), 6) for c in before[layers]],
            "crates_after": [round(float(c), 6) for c in outcome.crates],
            "best_fitness": outcome.fitness,
            "compression": (1.0 / outcome.fitness) if outcome.fitness > 0 else None,
            "evaluations": outcome.evaluations,
            "generations": outcome.generations,
            "seconds": round(seconds, 3),
            "trajectory": outcome.trajectory,
        }
        self.calls.append(record)
        self.pending, self.batch, self.step_batch = None, None, None
        self._summarise_call(record)
        self.log(
            f"olmp: iteration {record['iteration']}: NCS over {record['layers']} ({self.settings.constraint} accuracy "
            f"{reference:.4f}, delta {self.settings.delta:g}) -> c-rates {record['crates_after']}, "
            f"{outcome.fitness:.5f} kept, in {seconds:.1f} s ({outcome.evaluations} evaluations)"
        )

    def fitness_function(self, layers, reference, batch):
        """NCS's fitness of c-rates for `layers` on the global batch `batch = (x, y)`.

        The fitness is the fraction of weights and biases kept over all pruned layers when
        `layers` take the candidate c-rates (the others keep theirs), if the batch accuracy
        is at least `reference - delta`; otherwise the death penalty. Masks are not modified.
        """
        x, y = self.trainer.distribute(*batch)
        searched = np.zeros(len(self.crates), bool)
        searched[layers] = True
        total, delta = self.dns.total, self.settings.delta

        def fitness(candidate):
            crates = self.crates.copy()
            crates[layers] = candidate
            accuracy, kept = self.trainer.evaluate(x, y, self.dns.thresholds(crates), searched)
            return kept / total if accuracy >= reference - delta else DEATH_PENALTY

        return fitness

    # ----------------------------------------------------------------- reports

    def _summarise_call(self, record):
        if self.summaries is None:
            return
        offset = sum(len(call["trajectory"]) for call in self.calls[:-1])
        for generation, value in enumerate(record["trajectory"]):
            self.summaries.scalars(offset + generation, **{"olmp/ncs/best_fitness_per_generation": value})
        self.summaries.scalars(
            record["iteration"],
            **{
                "olmp/ncs/best_fitness": record["best_fitness"],
                "olmp/ncs/reference_accuracy": record["reference_accuracy"],
                **{f"olmp/crate/{name}": float(c) for name, c in zip(self.dns.names, self.crates)},
            },
        )

    def _report_progress(self, loss, correct, count):
        kept = self.dns.kept()
        record = {
            "iteration": self.iteration,
            "loss": round(float(loss), 6),
            "batch_accuracy": round(int(correct) / max(int(count), 1), 6),
            "learning_rate": self.trainer.learning_rate(),
            "kept_fraction": round(int(kept.sum()) / self.dns.total, 6),
        }
        self.progress.append(record)
        self.log(
            f"olmp: iteration {self.iteration}/{self.settings.iterations}: loss {record['loss']:.4f}, "
            f"batch accuracy {record['batch_accuracy']:.4f}, compression "
            + (f"{self.dns.total / int(kept.sum()):.1f}x" if kept.sum() else "infinite (no weight kept)")
        )
        if self.summaries is not None:
            per_layer = {f"olmp/kept/{n}": k / s for n, k, s in zip(self.dns.names, kept, self.dns.sizes)}
            scalars = {f"olmp/{k}": v for k, v in record.items() if k != "iteration"}
            self.summaries.scalars(self.iteration, **scalars, **per_layer)
            self.summaries.flush()

    # ----------------------------------------------------------------- checkpoint

    def _state(self):
        return {
            "settings": self.settings.as_dict(),
            "layers": self.dns.names,
            "statistics": [[s.mu, s.sigma] for s in self.dns.statistics],
            "iteration": self.iteration,
            "crates": self.crates.tolist(),
            "rng": self.rng.bit_generator.state,
            "calls": self.calls,
            "progress": self.progress,
            "pending": self.pending,
            "search_seconds": self.search_seconds,
            "train_seconds": self.train_seconds,
        }

    def save(self):
        """Writes the checkpoint atomically (a crash never leaves a half-written one)."""
        if self._clock is not None:  # the training time since the last tick: all but the searches'
            now, searched = time.perf_counter(), self.search_seconds
            self.train_seconds += now - self._clock[0] - (searched - self._clock[1])
            self._clock = (now, searched)
        arrays = self.trainer.state_arrays()
        if self.batch is not None:
            arrays["batch/x"], arrays["batch/y"] = self.batch
        if self.step_batch is not None and self.step_batch is not self.batch:
            arrays["step_batch/x"], arrays["step_batch/y"] = self.step_batch
        write_state(self.checkpoint_path, self._state(), arrays)

    def restore(self):
        """Loads the checkpoint into the model, optimizer and loop.

        Raises:
            PruneError: if it was written by a run with other layers or settings.
        """
        state, arrays = read_state(self.checkpoint_path)
        if state["layers"] != self.dns.names:
            raise PruneError(
                f"The OLMP checkpoint {self.checkpoint_path} prunes layers {state['layers']}, this run "
                f"{self.dns.names}; resume with the same --model, or start a new --output_dir."
            )
        # A setting added after the checkpoint was written counts as its default (OLMPSettings'
        # defaults, which equal RunConfig's olmp_* defaults).
        recorded = {**OLMPSettings().as_dict(), **state["settings"]}
        changed = sorted(k for k, v in self.settings.as_dict().items() if recorded.get(k) != v)
        if changed:
            raise PruneError(
                f"The OLMP checkpoint {self.checkpoint_path} was written with other settings "
                f"({', '.join(changed)}); resume with the flags of the interrupted run."
            )
        self.trainer.restore_arrays(arrays)
        self.dns.statistics = [LayerStatistics(mu, sigma) for mu, sigma in state["statistics"]]
        self.iteration = int(state["iteration"])
        self.crates = np.array(state["crates"], "float64")
        self.rng.bit_generator.state = state["rng"]
        self.calls, self.progress = state["calls"], state["progress"]
        self.pending = state["pending"]
        self.batch = (arrays["batch/x"], arrays["batch/y"]) if self.pending is not None else None
        self.step_batch = (arrays["step_batch/x"], arrays["step_batch/y"]) if "step_batch/x" in arrays else self.batch
        self.search_seconds = float(state["search_seconds"])
        self.train_seconds = float(state["train_seconds"])
