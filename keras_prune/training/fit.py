"""Supervised training and evaluation with Keras `fit`, under the caller's strategy.

`model.fit` distributes the datasets across the strategy's replicas and reduces the
metrics; compiling inside `strategy.scope()` puts the optimizer's variables there too.
"""

import time

import keras

from keras_prune.errors import TrainingDivergedError
from keras_prune.export.report_io import write_json
from keras_prune.training.optimizers import make_optimizer

__all__ = [
    "SCHEDULES", "ElapsedSeconds", "compile_classifier", "evaluate_accuracy", "learning_rate_schedule", "train_classifier",
]


def _sparse_smoothed_crossentropy(num_classes, label_smoothing):
    """Cross-entropy with label smoothing on integer labels (the datasets yield integers)."""

    def loss(y_true, logits):
        one_hot = keras.ops.one_hot(keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,)), num_classes)
        return keras.losses.categorical_crossentropy(
            one_hot, logits, from_logits=True, label_smoothing=label_smoothing
        )

    return loss


def compile_classifier(model, strategy, *, learning_rate, optimizer="sgd", label_smoothing=0.0, weight_decay=None):
    """Compiles `model` for logits classification of integer labels inside `strategy`'s scope."""
    with strategy.scope():
        opt = make_optimizer(optimizer, learning_rate, weight_decay=weight_decay)
        if label_smoothing:
            num_classes = int(model.output_shape[-1])
            loss = _sparse_smoothed_crossentropy(num_classes, label_smoothing)
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        model.compile(optimizer=opt, loss=loss, metrics=metrics)
    return model


SCHEDULES = ("constant", "cosine", "step")
"""Learning-rate schedules of `train_classifier`."""


def learning_rate_schedule(learning_rate, schedule, total_steps):
    """The learning rate (or schedule) for a run of `total_steps` optimizer steps.

    "constant" keeps it; "cosine" decays it to 0; "step" divides it by 10 at 50% and
    75% of the run (the CIFAR recipe of Pruning from Scratch and Network Slimming).
    """
    if schedule == "constant":
        return learning_rate
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, max(1, total_steps))
    if schedule == "step":
        # PiecewiseConstantDecay switches after a boundary step: step `total // 2` is the first at lr/10.
        half = max(0, total_steps // 2 - 1)
        boundaries = [half, max(half + 1, (3 * total_steps) // 4 - 1)]
        values = [learning_rate, learning_rate / 10, learning_rate / 100]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    raise ValueError(f"schedule must be one of {SCHEDULES}. Received: schedule={schedule!r}")


class ElapsedSeconds(keras.callbacks.Callback):
    """Writes, after every epoch, the seconds a training has taken to `path` as `{"seconds": ...}`
    (`before`: what interrupted processes had recorded), so that a resumed training reports them all."""

    def __init__(self, path, before):
        super().__init__()
        self.path, self.before, self.start = path, before, time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        write_json(self.path, {"seconds": self.before + time.perf_counter() - self.start}, durable=False)


def train_classifier(
    model,
    data,
    strategy,
    *,
    epochs,
    learning_rate,
    phase,
    callbacks=(),
    optimizer="sgd",
    schedule="constant",
    label_smoothing=0.0,
    weight_decay=None,
    verbose=1,
    learning_rate_flag="--learning_rate",
):
    """Trains `model` on `data.train`, validating on `data.validation`.

    Args:
        phase: a name for messages and logs ("pretrain", "finetune", ...).
        learning_rate_flag: the flag that sets `learning_rate`, named if training diverges.
        schedule: one of `SCHEDULES` (see `learning_rate_schedule`).
        label_smoothing: label smoothing of the cross-entropy (0 for none).
        weight_decay: L2 weight decay added to the gradient, before momentum, as PyTorch's and
            Caffe's `weight_decay` (the papers' recipes); None for none. See `optimizers`.

    Returns:
        The Keras `History`. Raises `TrainingDivergedError` if the loss became NaN.
    """
    if epochs <= 0:
        return None
    batches = int(data.train.cardinality().numpy())
    if batches < 0 and schedule != "constant":
        raise ValueError(
            f"The {schedule!r} schedule of phase '{phase}' counts its steps from the train pipeline's "
            "length, which is unknown (or infinite): give it one with "
            "`.apply(tf.data.experimental.assert_cardinality(batches))`, or use the constant schedule."
        )
    lr = learning_rate_schedule(learning_rate, schedule, max(1, batches) * epochs)
    compile_classifier(
        model,
        strategy,
        learning_rate=lr,
        optimizer=optimizer,
        label_smoothing=label_smoothing,
        weight_decay=weight_decay,
    )
    started = []  # the epochs begun, to name the one that diverged
    try:
        # raise_error: a diverged epoch ends at its first NaN batch, before a backup callback saves it
        return model.fit(
            data.train,
            validation_data=data.validation if data.info.num_validation else None,
            epochs=epochs,
            callbacks=[
                keras.callbacks.TerminateOnNaN(raise_error=True),
                keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: started.append(epoch)),
                *callbacks,
            ],
            verbose=verbose,
        )
    except RuntimeError as error:
        if "NaN or Inf loss" not in str(error):
            raise
        raise TrainingDivergedError(
            f"Training diverged in phase '{phase}' (loss became NaN/inf at epoch {started[-1] + 1}); try a "
            f"smaller {learning_rate_flag}. Everything written so far is kept."
        ) from None


def evaluate_accuracy(model, dataset, strategy):
    """Top-1 accuracy of a logits model on a dataset, computed under `strategy`."""
    with strategy.scope():
        metric = keras.metrics.SparseCategoricalAccuracy()
        probe = keras.Model(model.inputs, model.outputs)
        probe.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=[metric])
    result = probe.evaluate(dataset, verbose=0, return_dict=True)
    return float(result["sparse_categorical_accuracy"])
