"""Channel importance criteria."""

from keras_prune.criteria.norms import filter_norms

__all__ = ["filter_norms"]
