"""The data objects every source returns: `Dataset`, `DatasetInfo`, and the not-found error."""

import dataclasses

import numpy as np
import tensorflow as tf

__all__ = ["Dataset", "DatasetInfo", "DatasetNotFoundError"]


class DatasetNotFoundError(ValueError):
    """A tfds dataset is not prepared in the data directory, and downloading is disabled."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and a report need to know about a loaded dataset.

    Attributes:
        name: The name passed to `load_dataset` (e.g. `"mnist5k"`, `"cifar10"`).
        input_shape: `(height, width, channels)` of the images the pipelines yield.
        num_classes: Number of label classes; labels are `0 .. num_classes - 1`.
        num_train: Examples in one epoch of the train pipeline.
        num_validation: Examples in the validation pipeline (0 when `validation_fraction=0`).
        num_test: Examples in the test pipeline.
        source: `"embedded"` (shipped with an installed package) or `"tfds"`.
        mean: Per-channel mean subtracted from images in `[0, 1]`; with `std`, it undoes the
            normalisation when a report shows an example image: `pixel = x * std + mean`.
        std: Per-channel standard deviation images in `[0, 1]` are divided by.
        augmentation: The train-time augmentation, in words (`"none"` when there is none).
        pixel_max: The brightest raw pixel value (255 for 8-bit images; 16 for sklearn's
            digits); raw pixels are divided by it into `[0, 1]`.
    """

    name: str
    input_shape: tuple
    num_classes: int
    num_train: int
    num_validation: int
    num_test: int
    source: str
    mean: tuple = (0.0,)
    std: tuple = (1.0,)
    augmentation: str = "none"
    pixel_max: float = 255.0

    def inputs(self):
        """What the model is fed, for a report: anyone serving the exported model must feed the same.

        Returns a JSON-able dict: the split sizes, the input shape, and the per-channel
        normalisation `(pixel / pixel_max - mean) / std` of RGB (or grey) pixels in
        `0..pixel_max`.
        """
        return {
            "name": self.name,
            "source": self.source,
            "train_validation_test": [self.num_train, self.num_validation, self.num_test],
            "input_shape": list(self.input_shape),
            "normalisation": f"(pixel / {self.pixel_max:g} - mean) / std per channel",
            "pixel_max": float(self.pixel_max),
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
            "train_augmentation": self.augmentation,
        }

    def describe(self):
        """Returns a one-line summary, e.g. for a log line or a report header."""
        height, width, channels = self.input_shape
        return (
            f"{self.name} ({self.source}): {self.num_train}/{self.num_validation}/{self.num_test} "
            f"train/validation/test images of {height}x{width}x{channels}, "
            f"{self.num_classes} classes, augmentation: {self.augmentation}"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Three batched, prefetched pipelines of `(images float32 NHWC, labels int32)` and their info.

    `train` reshuffles (and, if enabled, re-augments) every epoch; `validation` and `test` are
    neither shuffled nor augmented, so two passes over them yield the same batches.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    info: DatasetInfo
    train_and_validation: tf.data.Dataset = None
    """A train pipeline (reshuffled, augmented) over train and validation together, for a final
    training on every labelled example (`with_validation_in_train`); None if the source built none.
    A copy with other `train` or `validation` pipelines (`dataclasses.replace`) must set it too
    (None, or its own), or it would still merge the old ones."""

    def test_images(self, count=64):
        """The first `count` test images as a NumPy array: real inputs, for timing a model whose
        cost depends on what it is fed (rnp's decisions)."""
        images, total = [], 0
        for x, _ in self.test:
            images.append(np.asarray(x))
            total += len(images[-1])
            if total >= count:
                break
        return np.concatenate(images)[:count]

    def with_validation_in_train(self):
        """This data with train and validation merged into one train split (no validation left),
        or None if the source built no `train_and_validation` pipeline.

        The merged split is a train pipeline of its own: the validation examples are shuffled
        in with the rest and augmented as they are.
        """
        if self.train_and_validation is None:
            return None
        total = self.info.num_train + self.info.num_validation
        info = dataclasses.replace(self.info, num_train=total, num_validation=0)
        return dataclasses.replace(
            self, train=self.train_and_validation, validation=self.validation.take(0), info=info,
            train_and_validation=None,
        )

    def limited(self, max_batches, batch_size):
        """The same data with at most `max_batches` batches of train and of validation.

        For smoke runs of large models: every training loop sees the shorter epochs. The
        test split stays whole, so the reported accuracy is still the test accuracy.
        """
        train_batches = _capped(self.train, max_batches)
        validation_batches = _capped(self.validation, max_batches)
        info = dataclasses.replace(
            self.info,
            num_train=min(self.info.num_train, train_batches * batch_size),
            num_validation=min(self.info.num_validation, validation_batches * batch_size),
        )
        merged = self.train_and_validation
        if merged is not None:  # as many examples as the two capped splits hold together
            examples = info.num_train + info.num_validation
            merged = (
                merged.unbatch().take(examples).batch(batch_size)
                .apply(tf.data.experimental.assert_cardinality(-(-examples // batch_size)))  # lost in unbatch
                .prefetch(tf.data.AUTOTUNE)
            )
        return dataclasses.replace(
            self, train=self.train.take(train_batches), validation=self.validation.take(validation_batches), info=info,
            train_and_validation=merged,
        )


def _capped(ds, max_batches):
    """`max_batches`, or fewer if `ds` is known to be shorter (tfds splits may not know)."""
    known = int(ds.cardinality())
    return max_batches if known < 0 else min(max_batches, known)
