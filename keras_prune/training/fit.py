"""Supervised training and evaluation with Keras `fit`, under the caller's strategy.

`model.fit` distributes the datasets across the strategy's replicas and reduces the
metrics; compiling inside `strategy.scope()` puts the optimizer's variables there too.
"""

import math

import keras

from keras_prune.errors import TrainingDivergedError

__all__ = ["compile_classifier", "evaluate_accuracy", "train_classifier"]


def compile_classifier(model, strategy, *, learning_rate, optimizer="sgd", label_smoothing=0.0, weight_decay=None):
    """Compiles `model` for logits classification inside `strategy`'s scope."""
    with strategy.scope():
        if optimizer == "sgd":
            opt = keras.optimizers.SGD(learning_rate, momentum=0.9, weight_decay=weight_decay)
        elif optimizer == "adam":
            opt = keras.optimizers.Adam(learning_rate, weight_decay=weight_decay)
        else:
            raise ValueError(f"optimizer must be 'sgd' or 'adam'. Received: optimizer={optimizer!r}")
        if label_smoothing:
            loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
            metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        model.compile(optimizer=opt, loss=loss, metrics=metrics)
    return model


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
    verbose=1,
):
    """Trains `model` on `data.train`, validating on `data.validation`.

    Args:
        phase: a name for messages and logs ("pretrain", "finetune", ...).
        schedule: "constant" or "cosine" (decays to 0 over the run).

    Returns:
        The Keras `History`. Raises `TrainingDivergedError` if the loss became NaN.
    """
    if epochs <= 0:
        return None
    lr = learning_rate
    if schedule == "cosine":
        steps = max(1, int(data.train.cardinality().numpy())) * epochs
        lr = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    compile_classifier(model, strategy, learning_rate=lr, optimizer=optimizer)
    history = model.fit(
        data.train,
        validation_data=data.validation if data.info.num_validation else None,
        epochs=epochs,
        callbacks=[keras.callbacks.TerminateOnNaN(), *callbacks],
        verbose=verbose,
    )
    losses = history.history.get("loss", [])
    if any(not math.isfinite(v) for v in losses):
        raise TrainingDivergedError(
            f"Training diverged in phase '{phase}' (loss became NaN/inf at epoch "
            f"{len(losses)}); try a smaller --learning_rate. Everything written so far is kept."
        )
    return history


def evaluate_accuracy(model, dataset, strategy):
    """Top-1 accuracy of a logits model on a dataset, computed under `strategy`."""
    with strategy.scope():
        metric = keras.metrics.SparseCategoricalAccuracy()
        probe = keras.Model(model.inputs, model.outputs)
        probe.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=[metric])
    result = probe.evaluate(dataset, verbose=0, return_dict=True)
    return float(result["sparse_categorical_accuracy"])
