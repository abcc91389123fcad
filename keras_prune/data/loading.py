"""`load_dataset`: one entry point for the embedded datasets and for tfds."""

import numbers

import numpy as np
import tensorflow as tf

from keras_prune.data import core, embedded, pipeline, preprocessing, tfds_source

__all__ = ["load_dataset"]


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_arguments(name, batch_size, validation_fraction, seed, image_size):
    """Validates the arguments of `load_dataset`; returns `image_size` as `(height, width)`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"Expected `name` to be a non-empty string. Received: name={name!r}")
    if not _is_int(batch_size) or batch_size <= 0:
        raise ValueError(
            f"Expected `batch_size` to be an integer > 0. Received: batch_size={batch_size!r}"
        )
    if (
        isinstance(validation_fraction, bool)
        or not isinstance(validation_fraction, numbers.Real)
        or not 0 <= validation_fraction < 1
    ):
        raise ValueError(
            f"Expected `validation_fraction` to be a number in [0, 1). "
            f"Received: validation_fraction={validation_fraction!r}"
        )
    if not _is_int(seed):
        raise ValueError(f"Expected `seed` to be an integer. Received: seed={seed!r}")
    if image_size is None:
        return None
    size = (image_size, image_size) if _is_int(image_size) else image_size
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(_is_int(side) and side > 0 for side in size)
    ):
        raise ValueError(
            f"Expected `image_size` to be None, an integer > 0 or a (height, width) pair of "
            f"integers > 0. Received: image_size={image_size!r}"
        )
    return (int(size[0]), int(size[1]))


def _load_embedded(name, *, batch_size, validation_fraction, seed, augment, image_size):
    splits = embedded.load_embedded(name, validation_fraction=validation_fraction)
    # MNIST-like data gets no augmentation (as for tfds MNIST), whatever `augment` says.
    recipe = preprocessing.Normalize(mean=splits.mean, std=splits.std, output_size=image_size)
    arrays = {
        "train": (splits.x_train, splits.y_train),
        "validation": (splits.x_validation, splits.y_validation),
        "test": (splits.x_test, splits.y_test),
        "train_and_validation": (
            np.concatenate([splits.x_train, splits.x_validation]),
            np.concatenate([splits.y_train, splits.y_validation]),
        ),
    }
    pipelines = {
        split: pipeline.build_pipeline(
            tf.data.Dataset.from_tensor_slices((x, y)),
            preprocessing=recipe,
            batch_size=batch_size,
            training=split.startswith("train"),
            augment=augment,
            seed=seed,
            shuffle_buffer=max(1, len(y)),  # The whole set: a perfect shuffle.
            auto_shard_by_data=True,
            autotune=False,  # an in-memory pipeline this cheap gains nothing, and stalls (see build_pipeline)
        )
        for split, (x, y) in arrays.items()
    }
    info = core.DatasetInfo(
        name=name,
        input_shape=recipe.output_shape(splits.input_shape),
        num_classes=splits.num_classes,
        num_train=len(splits.y_train),
        num_validation=len(splits.y_validation),
        num_test=len(splits.y_test),
        source="embedded",
        mean=recipe.mean,
        std=recipe.std,
        augmentation=recipe.augmentation,
        pixel_max=embedded.PIXEL_MAX[name],
    )
    return core.Dataset(**pipelines, info=info)


def load_dataset(
    name="mnist5k",
    *,
    data_dir=None,
    batch_size=128,
    validation_fraction=0.1,
    seed=0,
    augment=True,
    image_size=None,
):
    """Loads train, validation and test pipelines of an image classification dataset.

    Embedded datasets (`DATASET_NAMES`: `"mnist5k"`, `"digits"`) load offline from installed
    packages: a fixed stratified 20% test split, then a stratified `validation_fraction` of the
    rest. They are scaled to `[0, 1]` and normalised with the mean and std of the train split
    alone. Any other name is read from a prepared TensorFlow Datasets directory, never
    downloaded, with the standard preprocessing of its family (CIFAR, ImageNet, MNIST-like).

    Args:
        name: An embedded name or a tfds name (`"cifar10"`, `"imagenet2012"`, `"mnist:3.0.1"`).
        data_dir: Directory of prepared tfds datasets; default: tfds's default data dir
            (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`). Unused for embedded datasets.
        batch_size: Examples per batch; the last batch of an epoch may be smaller.
        validation_fraction: Share of the training data held out for validation, in `[0, 1)`.
        seed: Seed of the train order and of the augmentation; held-out splits do not depend
            on it, so runs with different seeds are evaluated on the same images.
        augment: Whether the train pipeline augments (CIFAR and ImageNet recipes only).
        image_size: Optional `(height, width)` or side length every split is resized to
            (for ImageNet-like datasets: the crop size, default 224).

    Returns:
        A `Dataset` with `train`, `validation`, `test` and `info`.

    Raises:
        DatasetNotFoundError: A tfds dataset is not prepared in `data_dir`.
        ValueError: An unknown name or a bad argument.
    """
    image_size = _check_arguments(name, batch_size, validation_fraction, seed, image_size)
    options = dict(
        batch_size=int(batch_size),
        validation_fraction=float(validation_fraction),
        seed=int(seed),
        augment=bool(augment),
        image_size=image_size,
    )
    if name in embedded.DATASET_NAMES:
        return _load_embedded(name, **options)
    return tfds_source.load_tfds(name, data_dir=data_dir, **options)
