"""The engine: channel-dependency analysis, surgery, and FLOPs/params counting."""

from keras_prune.graph import applications_rules  # noqa: F401  (registers rules for keras.applications layers)

from keras_prune.graph.dependency import ChannelGraph, ChannelGroup, Member, analyze, channel_groups
from keras_prune.graph.flops import FlopsCount, ParamsCount, count_flops, count_params
from keras_prune.graph.rules import passthrough, register_channel_rule
from keras_prune.graph.surgery import expand_channels, expanded_widths, masked_reference, prune_channels, reinitialize

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "FlopsCount",
    "Member",
    "ParamsCount",
    "analyze",
    "channel_groups",
    "count_flops",
    "count_params",
    "expand_channels",
    "expanded_widths",
    "masked_reference",
    "passthrough",
    "prune_channels",
    "register_channel_rule",
    "reinitialize",
]
