"""The method registry: names, and which general settings each method reads."""

import glob
import os
import re

import pytest

from keras_prune import methods
from keras_prune.methods import GENERAL_SETTINGS, METHODS, READS, get_method, ignored_settings

PACKAGE = os.path.dirname(methods.__file__)
READ = re.compile(r"\bconfig\.([a-z_]+)")


def _sources(method):
    files = glob.glob(os.path.join(PACKAGE, method, "*.py")) or [os.path.join(PACKAGE, f"{method}.py")]
    return "".join(open(path).read() for path in files)


def _reads(source):
    return set(READ.findall(source)) & GENERAL_SETTINGS


@pytest.mark.parametrize("method", METHODS)
def test_each_method_declares_the_general_settings_its_code_reads(method):
    source = _sources(method)
    found = _reads(source)
    if re.search(r"\bretrain\(", source):  # base.retrain reads the fine-tuning settings itself
        found |= _reads(open(os.path.join(PACKAGE, "base.py")).read())
    assert found == set(READS[method])


def test_settings_a_method_does_not_read_are_named():
    assert ignored_settings("olmp", ["target_flops", "learning_rate", "finetune_epochs", "dataset"]) == [
        "finetune_epochs", "target_flops"
    ]
    assert ignored_settings("scratch", ["target_flops", "epochs", "budget_train"]) == []


def test_an_unknown_method_names_the_known_ones():
    with pytest.raises(ValueError, match="Expected one of .*'scratch'"):
        get_method("prune_everything")
