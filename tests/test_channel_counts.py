"""benchmarks/channel_counts.py: the timed nets differ only in their inner channel count."""

import pytest

from conftest import load_benchmark

channel_counts = load_benchmark("channel_counts")


@pytest.mark.parametrize("inner", [16, 7])
def test_only_the_inner_layers_change_width(inner):
    model = channel_counts.conv_net(inner, depth=2)
    convs = [layer.filters for layer in model.layers if hasattr(layer, "filters")]
    assert convs == [16, inner, 16, inner, 16]
    assert model.output_shape == (None, 10)
