"""benchmarks/channel_counts.py: the timed nets differ only in their inner channel count."""

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
_spec = importlib.util.spec_from_file_location("channel_counts", os.path.join(ROOT, "benchmarks", "channel_counts.py"))
channel_counts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(channel_counts)


@pytest.mark.parametrize("inner", [16, 7])
def test_only_the_inner_layers_change_width(inner):
    model = channel_counts.conv_net(inner, depth=2)
    convs = [layer.filters for layer in model.layers if hasattr(layer, "filters")]
    assert convs == [16, inner, 16, inner, 16]
    assert model.output_shape == (None, 10)
