"""Datasets read from a prepared TensorFlow Datasets directory; nothing is ever downloaded.

Validation is carved from the end of tfds's `train` split (`train[:n_train]` /
`train[n_train:]`, in exact example counts); the test pipeline reads `test`, or `validation`
for datasets without a `test` split and for ImageNet, whose `test` split (prepared when its
test archive was given) has no labels. Which preprocessing a dataset gets is decided by
`preprocessing_for`: a table of known names, then the image shape.
"""

import os

import tensorflow as tf

from keras_prune.data import core, pipeline, preprocessing
from keras_prune.data.embedded import DATASET_NAMES

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "load_tfds", "preprocessing_for"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Published per-channel statistics of each dataset's full tfds `train` split, in [0, 1]. They
# include the images this module holds out for validation (4 numbers from 50,000 images, a
# negligible leak) and never the test split. Other fixed-size datasets get statistics computed
# on the training part, see `_train_statistics`.
_KNOWN_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_CIFAR_LIKE = frozenset({"cifar10", "cifar100"})
_IMAGENET_LIKE = frozenset({"imagenet2012", "imagenet2012_subset", "imagenette"})
_STATS_SAMPLE = 10_000
_MAX_SHUFFLE_BUFFER = 10_000


def _tfds():
    # Imported on first use: the embedded datasets must not pay for importing tfds.
    import tensorflow_datasets as tfds

    return tfds


def _unknown_name_error(name):
    return ValueError(
        f"Expected an embedded dataset name (one of {', '.join(DATASET_NAMES)}) or a "
        f"TensorFlow Datasets name such as 'mnist', 'cifar10' or 'imagenet2012'. "
        f"Received: name={name!r}"
    )


def _not_prepared_error(name, root, builder):
    manual_flag, manual_note = "", ""
    if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
        manual_flag = " --manual_dir=DIR_WITH_THE_ORIGINAL_ARCHIVES"
        manual_note = " (it needs the original archives, downloaded by hand)"
    message = (
        f"Dataset {name!r} is not prepared in data_dir={root} (looked for {builder.data_dir}) "
        f"and keras_prune never downloads: on a machine with internet run "
        f"`tfds build {name} --data_dir={root}{manual_flag}`{manual_note}, then copy {root}/{builder.name} into "
        f"{root} on this machine (or point --data_dir, in Python data_dir=, at a folder that holds it)."
    )
    return core.DatasetNotFoundError(message.replace("\n", " "))  # One line, even for odd paths.


def preprocessing_for(base_name, image_shape, *, output_size=None, statistics=None):
    """Chooses the preprocessing recipe of a tfds dataset.

    Args:
        base_name: The tfds builder name without config or version (`"cifar10"`).
        image_shape: `(height, width, channels)` of the stored images; `None` for a size that
            varies between images.
        output_size: Optional `(height, width)` to resize (or crop) every image to.
        statistics: A function returning `(mean, std)` computed on training images, called only
            for fixed-size datasets without published statistics.

    Returns:
        A `keras_prune.data.preprocessing.Normalize` (or subclass).
    """
    height, width, channels = image_shape
    if base_name in _IMAGENET_LIKE or height is None or width is None:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        if channels != 3:  # A grey-scale photo dataset: the channel-averaged ImageNet values.
            mean, std = (sum(mean) / 3,) * channels, (sum(std) / 3,) * channels
        return preprocessing.ResizedCrop(mean=mean, std=std, output_size=output_size or (224, 224))
    mean, std = _KNOWN_STATS[base_name] if base_name in _KNOWN_STATS else statistics()
    if base_name in _CIFAR_LIKE:
        return preprocessing.PadCropFlip(mean=mean, std=std, output_size=output_size, pad=4)
    return preprocessing.Normalize(mean=mean, std=std, output_size=output_size)


def _train_statistics(images, channels):
    """Returns per-channel `(mean, std)` of a dataset of float images in `[0, 1]`."""
    zero = tf.zeros([channels], tf.float64)

    def accumulate(totals, image):
        total, squares, count = totals
        pixels = tf.reshape(tf.cast(image, tf.float64), [-1, channels])
        return (
            total + tf.reduce_sum(pixels, 0),
            squares + tf.reduce_sum(tf.square(pixels), 0),
            count + tf.cast(tf.shape(pixels)[0], tf.float64),
        )

    total, squares, count = images.reduce((zero, zero, tf.constant(0.0, tf.float64)), accumulate)
    mean = total / count
    std = tf.sqrt(tf.maximum(squares / count - tf.square(mean), 1e-12))
    return tuple(float(m) for m in mean.numpy()), tuple(float(s) for s in std.numpy())


def _both_parts(read, num_train, num_validation, seed):
    """The train split's examples, train and validation parts drawn at random in proportion to
    their sizes: a dataset in one file (CIFAR) read in order would leave the validation part,
    its last records, to the end of every epoch, past a bounded shuffle buffer's reach."""
    if not num_validation:
        return read("train", True)
    total = num_train + num_validation
    examples = tf.data.Dataset.sample_from_datasets(
        [read(f"train[:{num_train}]", True), read(f"train[{num_train}:]", True)],
        weights=[num_train / total, num_validation / total],
        seed=seed,
        rerandomize_each_iteration=True,
    )
    # Its length is lost in the sampling; the learning-rate schedules count steps from it.
    return examples.apply(tf.data.experimental.assert_cardinality(total))


def load_tfds(name, *, data_dir, batch_size, validation_fraction, seed, augment, image_size):
    """Loads a prepared tfds image-classification dataset; see `keras_prune.data.load_dataset`.

    Raises:
        DatasetNotFoundError: The dataset is not prepared in `data_dir`.
        ValueError: `name` is not a tfds builder, or the dataset is not a supervised image
            classification dataset with a `train` split.
    """
    tfds = _tfds()
    base_name = name.split(":")[0].split("/")[0]
    if base_name not in tfds.list_builders(with_community_datasets=False):
        raise _unknown_name_error(name)
    root = os.fspath(data_dir) if data_dir is not None else tfds.core.constants.DATA_DIR
    if data_dir is not None and "://" not in root and not os.path.isdir(root):
        raise core.DatasetNotFoundError(
            f"Dataset {name!r}: data_dir={root} does not exist (a mistyped --data_dir?); give the folder "
            "that holds the prepared tfds datasets."
        )
    try:
        builder = tfds.builder(name, data_dir=root)
    except AssertionError as error:  # tfds asserts on a version neither prepared nor in its code
        raise core.DatasetNotFoundError(
            f"Dataset {name!r}: {error}. Name a version prepared in data_dir={root}, or none for the newest."
        ) from None
    if not builder.is_prepared():
        raise _not_prepared_error(name, root, builder)

    splits = builder.info.splits
    keys = builder.info.supervised_keys
    if "train" not in splits or not (isinstance(keys, tuple) and len(keys) == 2):
        raise ValueError(
            f"Expected a supervised tfds dataset with a 'train' split. Received: name={name!r} "
            f"with splits {sorted(splits)} and supervised_keys={keys}"
        )
    # ImageNet's tfds `test` split labels every image -1: it is scored on `validation`.
    order = ("validation", "test") if base_name in _IMAGENET_LIKE else ("test", "validation")
    test_split = next((s for s in order if s in splits), None)
    if test_split is None:
        raise ValueError(
            f"Expected a tfds dataset with a 'test' or 'validation' split. Received: "
            f"name={name!r} with splits {sorted(splits)}"
        )
    image_key, label_key = keys
    image_feature = builder.info.features[image_key]
    if not isinstance(image_feature, tfds.features.Image):
        raise ValueError(
            f"Expected an image dataset. Received: name={name!r} whose {image_key!r} feature "
            f"is a {type(image_feature).__name__}"
        )
    num_classes = getattr(builder.info.features[label_key], "num_classes", None)
    if num_classes is None:
        raise ValueError(
            f"Expected a classification dataset with a class label. Received: name={name!r} "
            f"whose {label_key!r} feature is a {type(builder.info.features[label_key]).__name__}"
        )
    num_total = splits["train"].num_examples
    num_validation = int(round(validation_fraction * num_total))
    num_train = num_total - num_validation

    def read(split, shuffle_files):
        return builder.as_dataset(
            split=split,
            as_supervised=True,
            shuffle_files=shuffle_files,
            # Decoded after the shuffle, so the buffer holds encoded (small) images.
            decoders={image_key: tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(shuffle_seed=seed),
        )

    def decode(encoded, label):
        image = tf.image.convert_image_dtype(image_feature.decode_example(encoded), tf.float32)
        return image, tf.cast(label, tf.int32)

    def statistics():
        # The first examples of the train part: tfds shuffles examples when it prepares a
        # dataset, so they are a fair sample, and the validation part is never read.
        sample = read(f"train[:{min(num_train, _STATS_SAMPLE)}]", False).map(decode)
        return _train_statistics(sample.map(lambda image, label: image), image_feature.shape[-1])

    recipe = preprocessing_for(
        base_name, image_feature.shape, output_size=image_size, statistics=statistics
    )
    sources = {
        "train": (read(f"train[:{num_train}]", True), True),
        "validation": (
            read(f"train[{num_train}:]", False) if num_validation else read("train", False).take(0),
            False,
        ),
        "test": (read(test_split, False), False),
        "train_and_validation": (_both_parts(read, num_train, num_validation, seed), True),
    }
    pipelines = {
        split: pipeline.build_pipeline(
            examples,
            preprocessing=recipe,
            batch_size=batch_size,
            training=training,
            augment=augment,
            seed=seed,
            shuffle_buffer=max(1, min(num_train, _MAX_SHUFFLE_BUFFER)),
            decode=decode,
        )
        for split, (examples, training) in sources.items()
    }
    info = core.DatasetInfo(
        name=name,
        input_shape=recipe.output_shape(image_feature.shape),
        num_classes=int(num_classes),
        num_train=num_train,
        num_validation=num_validation,
        num_test=splits[test_split].num_examples,
        source="tfds",
        mean=recipe.mean,
        std=recipe.std,
        augmentation=recipe.augmentation if augment else "none",
    )
    return core.Dataset(**pipelines, info=info)
