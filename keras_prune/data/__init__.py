"""Datasets and the input pipeline: embedded offline datasets and TensorFlow Datasets.

`load_dataset(name)` returns a `Dataset` of batched, prefetched `tf.data` pipelines yielding
`(images float32 NHWC, labels int32)` and a `DatasetInfo`; `as_numpy` reads one back.
"""

from keras_prune.data.core import Dataset, DatasetInfo, DatasetNotFoundError
from keras_prune.data.embedded import DATASET_NAMES
from keras_prune.data.loading import load_dataset
from keras_prune.data.pipeline import as_numpy

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "DatasetInfo",
    "DatasetNotFoundError",
    "as_numpy",
    "load_dataset",
]
