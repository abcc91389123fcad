"""Getting results out: plain models (`strip`), SavedModel, reports, plots, summaries."""

from keras_prune.export.fold import fold_batch_norms
from keras_prune.export.latency import measure_latency
from keras_prune.export.strip import removable_channels, strip

__all__ = ["fold_batch_norms", "measure_latency", "removable_channels", "strip"]
