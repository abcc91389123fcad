"""Pruning layers: weight-masked layers and channel gates.

All save to `.keras`. Importing this package registers them with Keras, so a file holding them
loads with `keras.saving.load_model` once `keras_prune.layers` is imported (`import keras_prune`
alone imports no subpackage).
"""

from keras_prune.layers.gates import (
    ChannelGate,
    ChannelGroupGate,
    ChannelMask,
    GatedBatchNormalization,
    UnitInterval,
    group_sizes,
)
from keras_prune.layers.masked import (
    MASKED_LAYERS,
    MaskedConv2D,
    MaskedDense,
    MaskedDepthwiseConv2D,
)

__all__ = [
    "ChannelGate",
    "ChannelGroupGate",
    "ChannelMask",
    "GatedBatchNormalization",
    "MASKED_LAYERS",
    "MaskedConv2D",
    "MaskedDense",
    "MaskedDepthwiseConv2D",
    "UnitInterval",
    "group_sizes",
]
