"""The one input pipeline every source goes through, and `as_numpy` to read one back.

A source hands over a `tf.data.Dataset` of `(image, label)` examples; `build_pipeline` shuffles
(train only), decodes, preprocesses, batches and prefetches it. The result is a plain batched
`tf.data.Dataset` (no Python generators), so `strategy.experimental_distribute_dataset` can
split it across replicas.
"""

import numpy as np
import tensorflow as tf

__all__ = ["as_numpy", "build_pipeline"]


def build_pipeline(
    examples,
    *,
    preprocessing,
    batch_size,
    training,
    augment,
    seed,
    shuffle_buffer,
    decode=None,
    auto_shard_by_data=False,
    autotune=True,
):
    """Turns a dataset of single examples into batches of `(images float32, labels int32)`.

    Args:
        examples: A `tf.data.Dataset` of `(image, label)` pairs.
        preprocessing: A `keras_prune.data.preprocessing.Normalize` (or subclass).
        batch_size: Examples per batch; the last batch may be smaller.
        training: If True, shuffle with `seed`, reshuffling every epoch, and use the train
            transform; otherwise keep the order and use the eval transform.
        augment: If False, the train pipeline uses the eval transform (it is still shuffled).
        seed: Integer seed of the shuffle order and of the augmentation.
        shuffle_buffer: Examples held in the shuffle buffer (train only).
        decode: Optional function `(image, label) -> (image in [0, 1] float32, label int32)`,
            applied after the shuffle so that the buffer holds small encoded images.
        auto_shard_by_data: Shard by element rather than by file when a multi-worker strategy
            distributes the pipeline: right for in-memory sources, which have no files.
        autotune: False turns tf.data's autotuning off: parallel calls then stay at their
            starting value, min(16, tf.data's thread pool of one thread per core). Tearing
            down an autotuned iterator, which Keras does at every epoch's start, stalled
            ResNet-20 x0.5 on mnist5k for 2.1-2.4 s in 9 of 28 epochs (an epoch takes
            2.9 s), at no throughput gain for a pipeline this cheap: right for in-memory
            sources.

    Returns:
        A batched, prefetched `tf.data.Dataset`.
    """
    ds = examples
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if decode is not None:
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment:
        # One stateless seed pair per example, different every epoch and fixed by `seed`:
        # augmentation then does not depend on which thread runs the map.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda example, pair: (preprocessing.train(example[0], pair), example[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = ds.map(
            lambda image, label: (preprocessing.eval(image), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    if auto_shard_by_data:
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
    options.autotune.enabled = autotune
    return ds.with_options(options)


def as_numpy(ds, limit=None):
    """Reads `(x, y)` numpy arrays out of a pipeline, e.g. to test it or to pick example images.

    Reading the train pipeline starts a new epoch, so it yields a new order each call.

    Args:
        ds: A `tf.data.Dataset` of `(images, labels)`, batched or of single examples.
        limit: Optional maximum number of examples to read; `None` reads everything.

    Returns:
        `(x, y)`: the images and labels stacked along a first axis of at most `limit` rows.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(
            f"Expected `limit` to be None or an integer >= 0. Received: limit={limit!r}"
        )
    image_spec, label_spec = ds.element_spec
    batched = label_spec.shape.rank == 1
    xs, ys, count = [], [], 0
    if limit != 0:
        for x, y in ds.as_numpy_iterator():
            if not batched:
                x, y = x[np.newaxis], np.asarray(y)[np.newaxis]
            xs.append(x)
            ys.append(y)
            count += len(y)
            if limit is not None and count >= limit:
                break
    if not xs:
        example_shape = image_spec.shape[1:] if batched else image_spec.shape
        shape = (0, *(dim or 0 for dim in example_shape))
        return (
            np.zeros(shape, image_spec.dtype.as_numpy_dtype),
            np.zeros((0,), label_spec.dtype.as_numpy_dtype),
        )
    x, y = np.concatenate(xs), np.concatenate(ys)
    return (x, y) if limit is None else (x[:limit], y[:limit])
