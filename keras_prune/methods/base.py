"""What every method receives and returns, so the run pipeline can treat them alike."""

import dataclasses
import time

__all__ = ["MethodResult", "RunContext", "retrain"]


@dataclasses.dataclass
class RunContext:
    """Everything a method may use besides the model and the data.

    Attributes:
        strategy: the tf.distribute strategy; build models and train inside its scope.
        config: the resolved, frozen `RunConfig`.
        output_dir: the run folder (for checkpoints a method wants to resume from).
        summaries: a `RunSummaries` TensorBoard writer.
        log: `fn(message)` for progress lines.
        callbacks: `fn(phase) -> list` of Keras callbacks for a training phase
            (TensorBoard logging, backups).
        phase_done: `fn(phase)`, called once what the phase trained is saved: its backup
            goes (until then a kill resumes the phase from its backup).
        phase_seconds: `fn(phase) -> float`, the seconds the phase's finished epochs took in
            interrupted processes (0 in a new run). Each phase name is used once per run.
    """

    strategy: object
    config: object
    output_dir: str
    summaries: object
    log: object = print
    callbacks: object = lambda phase: []
    phase_done: object = lambda phase: None
    phase_seconds: object = lambda phase: 0.0


@dataclasses.dataclass
class MethodResult:
    """What a method hands back: the pruned model and what it wants reported.

    Attributes:
        model: the pruned (and fine-tuned / retrained) Keras model; may still hold
            keras_prune layers, which the pipeline strips before export.
        search_seconds: time spent deciding what to prune (not retraining).
        retrain_seconds: time spent fine-tuning or retraining the result.
        details: a JSON-able dict for the report's `method_details`.
        reference_flops: FLOPs the budget is measured against, if not the input model's.
        stats: optional `fn(data, strategy, latency_repeats) -> dict` with the keys of the
            report's `pruned` entry (accuracy, flops, params, nonzero_params, latency_ms),
            for a method whose result is not a static model (rnp: mean FLOPs per input,
            latency of its own serving function). None: measured on the stripped `model`.
        export: optional `fn(output_dir, formats) -> {name: path}` that writes the
            method's own artefacts instead of the stripped `model` (rnp: a SavedModel
            that computes only the chosen channel groups). None: the pipeline exports.
        layers: optional `fn(rows) -> rows` that turns the report's static layer table
            (dense against `model`) into what the method computes (rnp: each pruned conv's
            mean channels and MACs per input). None: the static table.
    """

    model: object
    search_seconds: float
    retrain_seconds: float = 0.0
    details: dict = dataclasses.field(default_factory=dict)
    reference_flops: int = None
    stats: object = None
    export: object = None
    layers: object = None


def retrain(model, data, ctx, *, epochs, phase):
    """Fine-tunes or retrains `model` with the run's settings; returns the seconds it took
    (interrupted processes' finished epochs included).

    Uses `--learning_rate`, `--schedule`, `--label_smoothing` and `--weight_decay`, so
    every method's final training phase is configured the same way.
    """
    from keras_prune.training import train_classifier

    config = ctx.config
    before = ctx.phase_seconds(phase)  # the epochs a killed process finished, which this one restores
    start = time.perf_counter()
    train_classifier(
        model,
        data,
        ctx.strategy,
        epochs=epochs,
        learning_rate=config.learning_rate,
        phase=phase,
        callbacks=ctx.callbacks(phase),
        schedule=config.schedule,
        label_smoothing=config.label_smoothing,
        weight_decay=config.weight_decay or None,
        verbose=0 if config.verbose == 0 else 2,
    )
    return before + time.perf_counter() - start
