"""Channel importance criteria."""

from keras_prune.criteria.norms import filter_norms
from keras_prune.criteria.registry import channel_scores, criterion_names, register_criterion

__all__ = ["channel_scores", "criterion_names", "filter_norms", "register_criterion"]
